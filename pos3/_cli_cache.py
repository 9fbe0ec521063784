"""The ``pos3 cache ls`` and ``pos3 cache prune`` subcommands, over the cache root.

Split from `pos3.cli` to keep each module under ~450 lines.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import anyio

from ._cache import choose_evictions, total_bytes
from ._cache import entries as cache_entries
from ._cache import prune as cache_prune
from ._cli_args import EXIT_OK, _size
from ._cli_output import _cache_json, _iso, _print_json, _short_time
from ._mirror import default_cache_root
from ._progress import human_bytes


def _cache_root(args: argparse.Namespace) -> Path:
    return Path(args.cache_root).expanduser().resolve() if args.cache_root else default_cache_root().resolve()


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
