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
import logging
from collections.abc import Sequence

from ._cli_args import (
    EXIT_CODES,
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    _seconds,
    _shard,
    _size,
    _workers,
)
from ._urls import is_url_like

__all__ = ["EXIT_CODES", "EXIT_FAILURE", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]

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
    ls.set_defaults(handler="ls", parser=ls)

    for name, handler, epilog, summary, description in (
        ("download", "download", _DOWNLOAD_EPILOG, "mirror an S3 prefix or object onto local disk",
         "Mirror an S3 prefix or object onto local disk and print the local path."),
        ("upload", "upload", _UPLOAD_EPILOG, "mirror a local folder or file to S3, once",
         "Make an S3 prefix (or object) a copy of a local folder (or file), once, and print the URL."),
        ("sync", "sync", _SYNC_EPILOG, "download, then upload once",
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
    cache_ls.set_defaults(handler="cache ls", parser=cache_ls)
    prune = actions.add_parser(
        "prune", parents=[cache_common], formatter_class=_Formatter, help="evict least recently used trees",
        description="Evict least recently used downloaded trees until the cache holds at most --max-bytes; "
                    "trees an open mirror uses (in any process) are never evicted.",
    )
    prune.add_argument("--max-bytes", metavar="N", type=_size, default=None,
                       help="size to trim to, e.g. 50G, 500M or 1000000 (default: $POS3_CACHE_MAX_BYTES)")
    prune.add_argument("-n", "--dry-run", action="store_true", help="list what would be evicted; delete nothing")
    prune.set_defaults(handler="cache prune", parser=prune)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``pos3`` command.

    Args:
        argv: Arguments without the program name; ``sys.argv[1:]`` by default.

    Returns:
        The exit code (argparse exits 2 by itself on malformed arguments).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in ("download", "upload", "sync"):
        _check_paths(args)
    # Only a command that runs imports the mirror, anyio and the rest: --help and --version stay quick.
    from ._cli_run import execute

    return execute(args)


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
