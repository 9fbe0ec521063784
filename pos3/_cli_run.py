"""The ``pos3`` commands once their arguments are parsed: one `pos3.amirror()` in `anyio.run`,
results printed, exceptions mapped to exit codes (see `pos3.cli`, which imports this module only
when a command runs)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import anyio

from ._cli_args import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from ._cli_cache import _cache_ls, _cache_prune
from ._cli_output import (
    _entry_json,
    _entry_line,
    _print_json,
    _print_plan,
    _print_result,
    _report_failures,
    _setup_logging,
    _unwrap,
)
from ._errors import InvalidURLError, NotFoundError, Pos3Error, ProfileError, TransferError
from ._facade import backend_options
from ._mirror import AsyncMirror, amirror
from ._plan import TransferPlan
from ._progress import cli_mode
from ._urls import bucket_listing, is_url_like, parse_s3_url

__all__ = ["execute"]

log = logging.getLogger("pos3")


def execute(args: argparse.Namespace) -> int:
    """Run the parsed command ``args``; its exit code."""
    sub: argparse.ArgumentParser = args.parser
    _setup_logging(args.verbose, args.quiet)
    handler = _HANDLERS[args.handler]
    try:
        if args.command in ("download", "upload", "sync"):
            parse_s3_url(args.url)  # only an s3:// URL is accepted; the message says why
        with cli_mode(force_bars=bool(getattr(args, "progress", False)), summary=not args.quiet):
            return int(anyio.run(handler, args, backend_options=backend_options()))
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
                                             profile=args.profile, keep_local=True)
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


def _after_download(down: TransferPlan, up: TransferPlan) -> TransferPlan:
    """The upload plan as it stands once ``down`` ran: what the download touches is in sync then.

    Both plans are computed before anything moves. A download copy makes that file identical on
    both sides, and a download delete removes the local file, so the upload would not carry
    either; a conflict stops the sync before its upload. Every other upload action (local work
    the download keeps, for one) stands as planned.
    """
    local_touched = {a.dst for a in down.actions if a.action in ("copy", "delete", "conflict")}
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
    return amirror(cache_root=args.cache_root, show_progress=progress,
                   stall_timeout=getattr(args, "stall_timeout", 15.0), max_workers=getattr(args, "workers", None),
                   ca_bundle=getattr(args, "ca_bundle", None), verify=not getattr(args, "no_verify_ssl", False))


_HANDLERS = {"ls": _ls, "download": _download, "upload": _upload, "sync": _sync, "cache ls": _cache_ls,
             "cache prune": _cache_prune}
