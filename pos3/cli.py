"""The ``pos3`` command line: ``ls``, ``download``, ``upload`` and ``sync`` over `AsyncMirror`.

The CLI is thin: every decision (what to copy, what to delete, where the cache path is, which
profile applies) is the library's; this module parses arguments, runs one `pos3.amirror()` in
`anyio.run`, prints results and maps exceptions to exit codes.

Streams and exit codes:

* stdout carries only results: listings, the local path of a ``download``/``sync``, the URL of an
  ``upload``, dry-run plans, or JSON with ``--json``.
* stderr carries progress (only on a terminal, or with ``--progress``; never with ``-q``), logs
  (``-v``/``-vv``/``-vvv``) and error messages.
* Exit codes (`EXIT_CODES`): 0 success; 1 nothing found or a failure (a missing bucket, prefix
  or local path, an S3 error, failed objects listed on stderr); 2 a usage error (bad arguments,
  an empty path, a URL that is not ``s3://``, an unknown profile); 130 interrupted (Ctrl-C),
  after partial files were removed.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from ._cache import CacheEntry, choose_evictions, total_bytes
from ._cache import entries as cache_entries
from ._cache import prune as cache_prune
from ._engine import ListEntry
from ._errors import InvalidURLError, NotFoundError, Pos3Error, ProfileError, TransferError, describe
from ._facade import backend_options
from ._mirror import AsyncMirror, amirror, default_cache_root
from ._plan import PlannedAction, TransferPlan
from ._progress import cli_mode, human_bytes
from ._shard import check_shard
from ._urls import bucket_listing, is_url_like, parse_s3_url

__all__ = ["EXIT_CODES", "EXIT_FAILURE", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

#: Every exit code of the command, with its meaning (rendered in docs/cli.md and ``--help``).
EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_FAILURE: "nothing found (a missing bucket, prefix or local path) or a failure (S3 refused a request, "
                  "some objects failed: each is listed on stderr, the others were transferred)",
    EXIT_USAGE: "usage error: bad arguments, an empty path, a URL that is not s3://, an unknown profile",
    EXIT_INTERRUPTED: "interrupted by Ctrl-C, after partial files were removed",
}

log = logging.getLogger("pos3")

_DESCRIPTION = """\
Mirror S3 prefixes onto local disk from the shell. Only what changed is transferred; the
local copy lives under the cache root (or --local) and is an ordinary folder."""

_MAIN_EPILOG = """\
examples:
  pos3 ls s3://
  pos3 ls s3://bucket/datasets/
  d=$(pos3 download s3://bucket/datasets/mnist/) && ls "$d"
  pos3 download s3://bucket/datasets/mnist/ ./mnist
  pos3 upload ./out s3://bucket/results/run-1/ --dry-run

Arguments go source first, destination second, as with 'aws s3 cp SRC DST'.
Run 'pos3 COMMAND --help' for the options of one command.
exit codes: 0 success, 1 nothing found or a failure, 2 usage errors, 130 interrupted."""

_LS_EPILOG = """\
An S3 prefix with nothing under it exits 1, as a missing local folder does; an empty
bucket lists nothing and exits 0.

examples:
  pos3 ls s3://
  pos3 ls s3://bucket/datasets/
  pos3 ls -r --long s3://bucket/datasets/mnist/
  pos3 ls --json s3://bucket/ | jq -r '.[].name'
  pos3 ls ~/.cache/pos3/_/bucket"""

_DOWNLOAD_EPILOG = """\
stdout carries only the local path, so the command composes:
  d=$(pos3 download s3://bucket/datasets/mnist/) && python train.py --data "$d"

examples:
  pos3 download s3://bucket/datasets/mnist/ --dry-run
  pos3 download s3://bucket/datasets/mnist/ ./mnist --delete --exclude '*.tmp'"""

_UPLOAD_EPILOG = """\
The local source comes first, as in 'aws s3 cp SRC DST' (or give it with --local). Without
it the source is the cache path that 'pos3 download URL' uses; it must exist. A file sent to
a URL ending in '/' is stored under that prefix with its own name, as 'aws s3 cp' does.

examples:
  pos3 upload ./out s3://bucket/results/run-1/ --dry-run
  pos3 upload ./out s3://bucket/results/run-1/ --delete --exclude '*.ckpt'
  pos3 upload ./model.pt s3://bucket/models/"""

_CACHE_EPILOG = """\
examples:
  pos3 cache ls
  pos3 cache prune --max-bytes 50G
  pos3 cache prune --max-bytes 0 --dry-run"""

_SYNC_EPILOG = """\
Downloads the prefix (an empty prefix is fine), then uploads the same folder once, so files
that exist only locally are sent. stdout carries only the local path.

examples:
  pos3 sync s3://bucket/jobs/run-1/ ./run-1 --dry-run
  pos3 sync s3://bucket/jobs/run-1/ ./run-1"""


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the line breaks of descriptions and examples."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``pos3`` command (also used to generate docs/cli.md).

    Returns:
        The parser; each subcommand's parser is reachable through its subparsers action.
    """
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="pos3", description=_DESCRIPTION, epilog=_MAIN_EPILOG, formatter_class=_Formatter
    )
    parser.add_argument("--version", action="version", version=f"pos3 {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def common_options(profile: bool) -> argparse.ArgumentParser:
        common = argparse.ArgumentParser(add_help=False)
        group = common.add_argument_group("common options")
        if profile:
            group.add_argument("--profile", metavar="NAME",
                               help="profile to use (a profile in the URL, s3://NAME@bucket/..., wins)")
        group.add_argument("--cache-root", metavar="PATH",
                           help="where mirrors live (default: $POS3_CACHE_ROOT, else ~/.cache/pos3)")
        group.add_argument("-v", "--verbose", action="count", default=0,
                           help="log to stderr: -v info, -vv debug, -vvv debug of every library")
        group.add_argument("-q", "--quiet", action="store_true",
                           help="no progress, no summary and no warnings on stderr (errors still show; wins over -v)")
        if profile:  # the cache is local: no endpoint, no TLS
            tls = group.add_mutually_exclusive_group()
            tls.add_argument("--ca-bundle", metavar="PATH",
                             help="PEM file of the CA(s) to trust for HTTPS endpoints, e.g. a private CA; wins over "
                                  "$AWS_CA_BUNDLE and every profile's ca_bundle")
            tls.add_argument("--no-verify-ssl", action="store_true",
                             help="do not check TLS certificates (only for a test server on a trusted network)")
        return common

    common = common_options(profile=True)
    cache_common = common_options(profile=False)  # the cache is local: no profile applies

    transfer = argparse.ArgumentParser(add_help=False)
    tgroup = transfer.add_argument_group("transfer options")
    tgroup.add_argument("--local", metavar="PATH",
                        help="local path, the same as the LOCAL argument (default: the cache path of URL)")
    tgroup.add_argument("--delete", action="store_true",
                        help="delete files absent from the source (off by default on the command line)")
    tgroup.add_argument("--exclude", metavar="PATTERN", action="append", default=[],
                        help="glob (*, **, ?, [...]) skipped on both sides; repeatable")
    tgroup.add_argument("-n", "--dry-run", action="store_true",
                        help="print what would be done, one line per action with its reason; change nothing")
    tgroup.add_argument("--json", action="store_true", help="print the result (or the dry-run plan) as JSON")
    tgroup.add_argument("--progress", action="store_true",
                        help="show progress bars on stderr even when it is not a terminal (a one-line summary "
                             "is always printed, except with -q)")
    tgroup.add_argument("--stall-timeout", metavar="SECONDS", type=_seconds, default=15.0,
                        help="abort and resume a response body that sends no byte for this long (default 15)")
    tgroup.add_argument("--workers", metavar="N", type=_workers, default=None,
                        help="requests in flight (default: chosen from the object sizes, up to 256 for small "
                             "objects; see the Performance page)")

    ls = commands.add_parser(
        "ls", parents=[common], formatter_class=_Formatter, epilog=_LS_EPILOG,
        help="list an S3 prefix or a local folder",
        description="List an S3 prefix (one full s3:// URL per line), the buckets (s3://), or a local folder "
                    "(one path per line).",
    )
    ls.add_argument("prefix", metavar="PREFIX",
                    help="s3://[profile@]bucket/prefix, s3:// for the buckets, or a local path")
    ls.add_argument("-r", "--recursive", action="store_true",
                    help="list every object (file) below, not only one level; folders are not listed")
    ls.add_argument("-l", "--long", action="store_true", help="add the last-modified time and the size in bytes")
    ls.add_argument("--json", action="store_true",
                    help="print a JSON array of {name, type, size, last_modified} objects")
    ls.set_defaults(handler=_ls, parser=ls)

    for name, handler, epilog, summary, description in (
        ("download", _download, _DOWNLOAD_EPILOG, "mirror an S3 prefix or object onto local disk",
         "Mirror an S3 prefix or object onto local disk and print the local path."),
        ("upload", _upload, _UPLOAD_EPILOG, "mirror a local folder or file to S3, once",
         "Make an S3 prefix (or object) a copy of a local folder (or file), once, and print the URL."),
        ("sync", _sync, _SYNC_EPILOG, "download, then upload once",
         "Download an S3 prefix, then upload the local folder once on completion; print the local path."),
    ):
        sub = commands.add_parser(
            name, parents=[transfer, common], formatter_class=_Formatter, epilog=epilog, help=summary,
            description=description,
        )
        if name == "upload":
            sub.add_argument("local_arg", metavar="LOCAL", nargs="?", default=None,
                             help="local folder or file to send (or --local)")
            sub.add_argument("url", metavar="URL", help="s3://[profile@]bucket/key")
        else:
            sub.add_argument("url", metavar="URL", help="s3://[profile@]bucket/key")
            sub.add_argument("local_arg", metavar="LOCAL", nargs="?", default=None,
                             help="local destination (or --local; default: the cache path of URL)")
        sub.set_defaults(handler=handler, parser=sub)
        if name == "download":
            sub.add_argument("--shard", metavar="RANK/WORLD", type=_shard,
                             help="fetch only this rank's byte-balanced share of the files, e.g. 0/8")
        if name == "upload":
            sub.add_argument("--atomic", action="store_true",
                             help="publish the folder as one snapshot (objects first, a commit last)")

    cache = commands.add_parser(
        "cache", formatter_class=_Formatter, epilog=_CACHE_EPILOG, help="show or trim the local cache",
        description="Show the downloaded trees of the cache, or evict the least recently used ones.",
    )
    actions = cache.add_subparsers(dest="cache_command", metavar="ACTION", required=True)
    cache_ls = actions.add_parser(
        "ls", parents=[cache_common], formatter_class=_Formatter, help="list cached trees with size and last use",
        description="List the downloaded trees of the cache, least recently used first, with size, last use "
                    "and whether an open mirror pins them.",
    )
    cache_ls.add_argument("--json", action="store_true", help="print a JSON array of trees")
    cache_ls.set_defaults(handler=_cache_ls, parser=cache_ls)
    prune = actions.add_parser(
        "prune", parents=[cache_common], formatter_class=_Formatter, help="evict least recently used trees",
        description="Evict least recently used downloaded trees until the cache holds at most --max-bytes; "
                    "trees an open mirror uses (in any process) are never evicted.",
    )
    prune.add_argument("--max-bytes", metavar="N", type=_size, default=None,
                       help="size to trim to, e.g. 50G, 500M or 1000000 (default: $POS3_CACHE_MAX_BYTES)")
    prune.add_argument("-n", "--dry-run", action="store_true", help="list what would be evicted; delete nothing")
    prune.set_defaults(handler=_cache_prune, parser=prune)
    return parser


def _shard(value: str) -> tuple[int, int]:
    rank, sep, world = value.partition("/")
    try:
        if not sep:
            raise ValueError
        return check_shard((int(rank), int(world))) or (0, 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: expected RANK/WORLD with 0 <= RANK < WORLD, e.g. 0/8") from None


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds") from None
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"{value!r}: a positive number of seconds is needed")
    return seconds


def _workers(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{value!r}: expected a whole number of requests, 1 or more")
    return n


def _size(value: str) -> int:
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    text = value.strip().upper().removesuffix("IB").removesuffix("B")
    unit = text[-1:] if text[-1:] in units else ""
    try:
        number = float(text[: len(text) - len(unit)])
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: expected a size such as 50G, 500M or 1000000") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"{value!r}: a size cannot be negative")
    return int(number * units[unit])


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``pos3`` command.

    Args:
        argv: Arguments without the program name; ``sys.argv[1:]`` by default.

    Returns:
        The exit code (argparse exits 2 by itself on malformed arguments).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    sub: argparse.ArgumentParser = args.parser
    _setup_logging(args.verbose, args.quiet)
    try:
        if args.command in ("download", "upload", "sync"):
            _check_paths(args)
            parse_s3_url(args.url)  # only an s3:// URL is accepted; the message says why
        with cli_mode(force_bars=bool(getattr(args, "progress", False)), summary=not args.quiet):
            return int(anyio.run(args.handler, args, backend_options=backend_options()))
    except BaseException as raised:
        exc = _unwrap(raised)
        if isinstance(exc, SystemExit):
            raise exc from None
        if isinstance(exc, KeyboardInterrupt):
            print("pos3: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        if isinstance(exc, InvalidURLError | ProfileError):
            sub.print_usage(sys.stderr)
            print(f"{sub.prog}: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        if isinstance(exc, TransferError):
            _report_failures(exc)
            return EXIT_FAILURE
        if isinstance(exc, BrokenPipeError):
            # A reader such as `head` closed stdout: stop quietly, as other tools do.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return EXIT_FAILURE
        if isinstance(exc, Pos3Error | OSError):
            print(f"pos3: error: {exc}", file=sys.stderr)
            return EXIT_FAILURE
        if isinstance(exc, ValueError):
            sub.print_usage(sys.stderr)
            print(f"{sub.prog}: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        raise


def _check_paths(args: argparse.Namespace) -> None:
    """Merge the positional LOCAL with --local, and refuse an empty path (an unset variable)."""
    sub: argparse.ArgumentParser = args.parser
    if args.local_arg is not None and args.local is not None and args.local_arg != args.local:
        sub.error(f"the local path is given twice ({args.local_arg!r} and --local {args.local!r}); give one")
    if args.local_arg is not None:
        args.local = args.local_arg
    if args.local is not None and not args.local.strip():
        sub.error("the local path is empty (an unset shell variable?); give a folder, e.g. --local ./data")
    if args.command == "upload" and args.local is not None and is_url_like(args.local) \
            and not is_url_like(args.url):
        sub.error(f"upload takes LOCAL then URL, source first as in 'aws s3 cp SRC DST': "
                  f"pos3 upload {args.url} {args.local}")


# ---------------------------------------------------------------------- commands


async def _ls(args: argparse.Namespace) -> int:
    if not is_url_like(args.prefix) and not await anyio.Path(Path(args.prefix).expanduser()).exists():
        # The library lists a missing folder as [] (as pos3 0.4.0 did); a shell user wants to know.
        raise FileNotFoundError(f"{args.prefix}: no such file or folder")
    async with _open(args, progress=False) as m:
        entries = await m.ls_entries(args.prefix, recursive=args.recursive, profile=args.profile)
    if args.recursive:  # every object below: folders are implied by the names, as in `aws s3 ls --recursive`
        entries = [e for e in entries if not e.is_dir]
    if not entries and is_url_like(args.prefix) and not bucket_listing(args.prefix)[0] \
            and parse_s3_url(args.prefix).key:
        # As a missing local folder does: nothing there is "not found", not an empty success.
        raise NotFoundError(f"{args.prefix}: no objects under this prefix", url=args.prefix)
    if args.json:
        _print_json([_entry_json(e) for e in entries])
    elif args.long:
        for e in entries:
            print(_entry_line(e))
    else:
        for e in entries:
            print(e.name)
    return EXIT_OK


async def _download(args: argparse.Namespace) -> int:
    async with _open(args) as m:
        local = m.local_path(args.url, args.local, profile=args.profile)
        if args.dry_run:
            plan = await m.plan_download(args.url, args.local, delete=args.delete, exclude=args.exclude or None,
                                         profile=args.profile, shard=args.shard)
            _print_plan(args, local, [("download", plan)])
            return EXIT_OK
        log.info("download %s to %s", args.url, local)
        path = await m.download(args.url, args.local, delete=args.delete, exclude=args.exclude or None,
                                profile=args.profile, shard=args.shard)
    _print_result(args, path)
    return EXIT_OK


async def _upload(args: argparse.Namespace) -> int:
    async with _open(args) as m:
        local = m.local_path(args.url, args.local, profile=args.profile)
        if not await anyio.Path(local).exists():
            hint = "check --local" if args.local else f"download {args.url} first, or pass --local"
            raise _NothingToUpload(f"{local}: nothing to upload, it does not exist ({hint})")
        if args.dry_run:
            plan = await m.plan_upload(args.url, args.local, delete=args.delete, exclude=args.exclude or None,
                                       profile=args.profile)
            _print_plan(args, local, [("upload", plan)])
            return EXIT_OK
        # Registered with no interval: leaving the block uploads exactly once.
        log.info("upload %s to %s", local, args.url)
        await m.upload(args.url, args.local, interval=None, delete=args.delete, exclude=args.exclude or None,
                       profile=args.profile, atomic=args.atomic)
    shown = args.url
    if args.url.endswith("/") and await anyio.Path(local).is_file():
        shown = args.url + local.name  # where the file went, as `aws s3 cp` prints it
    _print_result(args, local, show=shown)
    return EXIT_OK


async def _sync(args: argparse.Namespace) -> int:
    async with _open(args) as m:
        local = m.local_path(args.url, args.local, profile=args.profile)
        if args.dry_run:
            exclude = args.exclude or None
            try:
                down = await m.plan_download(args.url, args.local, delete=args.delete, exclude=exclude,
                                             profile=args.profile)
            except FileNotFoundError as exc:
                # An empty prefix is fine for sync (a job's first run); a missing bucket is not.
                if getattr(exc, "code", None) is not None:
                    raise
                down = TransferPlan()
            up = TransferPlan()
            if await anyio.Path(local).exists():
                up = await m.plan_upload(args.url, args.local, delete=args.delete, exclude=exclude,
                                         profile=args.profile)
            _print_plan(args, local, [("download", down), ("upload", _after_download(down, up))])
            return EXIT_OK
        log.info("sync %s with %s: download, then upload", args.url, local)
        path = await m.sync(args.url, args.local, interval=None, delete_local=args.delete, delete_remote=args.delete,
                            exclude=args.exclude or None, profile=args.profile)
    _print_result(args, path)
    return EXIT_OK


def _cache_root(args: argparse.Namespace) -> Path:
    return Path(args.cache_root).expanduser().resolve() if args.cache_root else default_cache_root().resolve()


def _cache_json(e: CacheEntry) -> dict[str, Any]:
    return {"path": str(e.path), "bytes": e.bytes, "last_used": _iso(e.last_used), "pinned": e.pinned,
            "inside": str(e.outer) if e.outer is not None else None}


def _iso(stamp: float) -> str:
    return datetime.datetime.fromtimestamp(stamp, tz=datetime.UTC).isoformat(timespec="seconds")


async def _cache_ls(args: argparse.Namespace) -> int:
    trees = await anyio.to_thread.run_sync(cache_entries, _cache_root(args))
    if args.json:
        _print_json([_cache_json(e) for e in trees])
        return EXIT_OK
    if trees:
        print(f"{'LAST USED (UTC)':19}  {'SIZE':>10}  {'PINNED':6}  PATH")
    for e in trees:
        inside = f"  (inside {e.outer})" if e.outer is not None else ""
        print(f"{_short_time(_iso(e.last_used)):19}  {human_bytes(e.bytes):>10}  {'yes' if e.pinned else 'no':6}  "
              f"{e.path}{inside}")
    if not args.quiet:
        total = total_bytes(trees)
        print(f"{len(trees)} trees, {human_bytes(total)} ({total} bytes) on disk", file=sys.stderr)
    return EXIT_OK


async def _cache_prune(args: argparse.Namespace) -> int:
    limit = args.max_bytes
    if limit is None:
        env = os.environ.get("POS3_CACHE_MAX_BYTES") or ""
        if not env:
            args.parser.error("give --max-bytes N (or set POS3_CACHE_MAX_BYTES)")
        try:
            limit = _size(env)
        except argparse.ArgumentTypeError as exc:
            args.parser.error(f"POS3_CACHE_MAX_BYTES: {exc}")
    root = _cache_root(args)
    if args.dry_run:
        trees = await anyio.to_thread.run_sync(cache_entries, root)
        for e in choose_evictions(trees, limit):
            print(f"(dryrun) evict: {e.path} ({human_bytes(e.bytes)})")
        return EXIT_OK
    for e in await anyio.to_thread.run_sync(cache_prune, root, limit):
        print(f"evicted: {e.path} ({human_bytes(e.bytes)})")
    return EXIT_OK


def _after_download(down: TransferPlan, up: TransferPlan) -> TransferPlan:
    """The upload plan as it stands once ``down`` ran: what the download touches is in sync then.

    Both plans are computed before anything moves. A download copy makes that file identical on
    both sides, and a download delete removes the local file, so the upload would not carry
    either; every other upload action stands as planned.
    """
    local_touched = {a.dst for a in down.actions}
    remote_touched = {a.src for a in down.actions if a.action == "copy"}
    kept = tuple(
        a for a in up.actions
        if not (a.src in local_touched or a.dst in remote_touched)
    )
    return TransferPlan(
        to_copy=[(a.src, a.dst) for a in kept if a.action == "copy"],
        to_delete=[a.dst for a in kept if a.action == "delete"],
        actions=kept,
    )


# ---------------------------------------------------------------------- helpers


class _NothingToUpload(Pos3Error, FileNotFoundError):
    """``pos3 upload`` was pointed at a local path that does not exist."""


def _open(args: argparse.Namespace, progress: bool | None = None) -> AsyncMirror:
    if progress is None:  # bars on a terminal or with --progress, a summary line unless -q: see cli_mode
        progress = not args.quiet
    m = amirror(cache_root=args.cache_root, show_progress=progress,
               stall_timeout=getattr(args, "stall_timeout", 15.0), max_workers=getattr(args, "workers", None))
    verify = False if getattr(args, "no_verify_ssl", False) else getattr(args, "ca_bundle", None)
    if verify is not None:
        # TODO(lead): an amirror(verify=...) argument instead of reaching into the options.
        m._options = dataclasses.replace(m._options, clients=dataclasses.replace(m._options.clients, verify=verify))
    return m


def _setup_logging(verbose: int, quiet: bool) -> None:
    for old in [h for h in log.handlers if getattr(h, "_pos3_cli", False)]:  # main() may run twice in a process
        log.removeHandler(old)
    handler = logging.StreamHandler(sys.stderr)
    handler._pos3_cli = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    if quiet:
        verbose = 0
    if verbose >= 3:
        logging.basicConfig(level=logging.DEBUG, handlers=[handler])
        return
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    log.setLevel(level)
    log.addHandler(handler)
    log.propagate = False


def _unwrap(exc: BaseException) -> BaseException:
    """The one meaningful exception inside (nested) exception groups, else the group itself."""
    while isinstance(exc, BaseExceptionGroup):
        inner = [e for e in exc.exceptions if not _is_cancellation(e)] or list(exc.exceptions)
        if len(inner) != 1:
            interrupts = [e for e in inner if isinstance(e, KeyboardInterrupt)]
            return interrupts[0] if interrupts else exc
        exc = inner[0]
    return exc


def _is_cancellation(exc: BaseException) -> bool:
    return isinstance(exc, asyncio.CancelledError)  # anyio.run uses the asyncio backend


def _report_failures(exc: TransferError) -> None:
    count = len(exc.failures)
    noun = "object" if count == 1 else "objects"
    print(f"pos3: error: {exc.operation} failed for {count} {noun}:", file=sys.stderr)
    for failure in exc.failures:
        print(f"  {describe(failure)}", file=sys.stderr)


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2))


def _print_result(args: argparse.Namespace, local: Path, show: str | None = None) -> None:
    if args.json:
        _print_json({"url": args.url, "local": str(local)})
    else:
        print(show if show is not None else local)


@dataclass(frozen=True)
class _Step:
    direction: str
    action: PlannedAction

    @property
    def line(self) -> str:
        a = self.action
        if a.action == "copy":
            return f"(dryrun) {self.direction}: {a.src} to {a.dst} ({a.reason})"
        return f"(dryrun) {a.action}: {a.dst} ({a.reason})"

    def as_json(self) -> dict[str, Any]:
        a = self.action
        return {"direction": self.direction, "action": a.action, "src": a.src, "dst": a.dst, "reason": a.reason,
                "size": a.size}


def _print_plan(args: argparse.Namespace, local: Path, plans: Sequence[tuple[str, TransferPlan]]) -> None:
    steps = [_Step(direction, a) for direction, plan in plans for a in plan.actions]
    copies = sum(1 for s in steps if s.action.action == "copy")
    deletes = len(steps) - copies
    total = sum(plan.total_bytes for _, plan in plans)
    if args.json:
        _print_json({
            "operation": args.command, "url": args.url, "local": str(local), "dry_run": True,
            "to_copy": copies, "to_delete": deletes, "total_bytes": total,
            "actions": [s.as_json() for s in steps],
        })
    else:
        for s in steps:
            print(s.line)
    if not args.quiet:
        print(f"(dryrun) {copies} to copy ({human_bytes(total)}), {deletes} to delete; nothing was changed",
              file=sys.stderr)


def _entry_json(e: ListEntry) -> dict[str, Any]:
    return {"name": e.name, "type": "dir" if e.is_dir else "file", "size": e.size,
            "last_modified": e.last_modified or None}


def _entry_line(e: ListEntry) -> str:
    if e.is_dir:
        return f"{'':19}  {'DIR':>12}  {e.name}"
    return f"{_short_time(e.last_modified):19}  {e.size:>12}  {e.name}"


def _short_time(stamp: str) -> str:
    """``2024-05-01 12:00:00`` (UTC) from an ISO 8601 time; the input unchanged if unparsable."""
    try:
        when = datetime.datetime.fromisoformat(stamp)
    except ValueError:
        return stamp
    if when.tzinfo is not None:
        when = when.astimezone(datetime.UTC)
    return when.strftime("%Y-%m-%d %H:%M:%S")
