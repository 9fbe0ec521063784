"""Drive pos3 (this tree's or the original 0.4.0, same API) for one transfer; run as a script.

    python pos3_client.py download s3://bucket/prefix/ LOCAL CACHE_ROOT
    python pos3_client.py upload   s3://bucket/prefix/ LOCAL CACHE_ROOT
    python pos3_client.py download ... --profile OUT.txt   # under pyinstrument, async core on the main thread

With ``--profile`` it also writes ``OUT.json``: the sampled time (idle waits left out) by package
and the functions with the most self time, from which the Performance page writes its sentences.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from typing import Any

IDLE = {("selectors.py", "select"), ("threading.py", "wait")}
IDLE_BUILTINS = {"epoll.poll", "poll", "select", "lock.acquire"}


def package(path: str) -> str:
    """The package a frame's file belongs to: ``pos3``, a site-packages distribution, or ``stdlib X``."""
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    if re.search(r"/pos3/[^/]+\.py$", path):
        return "pos3"
    match = re.search(r"/lib/python3[.0-9]*/(.+)$", path)
    if match:
        return "stdlib " + match.group(1).split("/", 1)[0].removesuffix(".py")
    return "other"


def aggregate(root: Any) -> dict[str, Any]:
    """Self time by package and by function over every non-idle frame of a pyinstrument session."""
    by_pkg: Counter[str] = Counter()
    by_fn: Counter[str] = Counter()
    stack: list[tuple[Any, str]] = [(root, "other")]
    while stack:
        frame, caller = stack.pop()
        path, fn = frame.file_path or "", frame.function
        # C functions (<built-in>) count for the package that called them
        pkg = caller if not path or path.startswith("<") else package(path)
        stack.extend((child, pkg) for child in frame.children)
        if frame.is_synthetic or (path.rsplit("/", 1)[-1], fn) in IDLE or fn in IDLE_BUILTINS:
            continue
        own = frame.total_self_time
        by_pkg[pkg] += own
        by_fn[f"{pkg}: {fn} ({path.rsplit('/', 1)[-1]})"] += own
    total = sum(by_pkg.values()) or 1.0
    return {"seconds": total,
            "shares": {k: v / total for k, v in by_pkg.most_common()},
            "top": [(k, v / total) for k, v in by_fn.most_common(12)]}


def run_sync(op: str, url: str, local: str, cache: str) -> None:
    import pos3

    with pos3.mirror(cache_root=cache, show_progress=False):
        if op == "download":
            pos3.download(url, local)
        else:
            pos3.upload(url, local, interval=None)


async def run_async(op: str, url: str, local: str, cache: str) -> None:
    import pos3

    async with pos3.amirror(cache_root=cache, show_progress=False) as m:
        if op == "download":
            await m.download(url, local)
        else:
            await m.upload(url, local, interval=None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("op", choices=["download", "upload"])
    parser.add_argument("url")
    parser.add_argument("local")
    parser.add_argument("cache")
    parser.add_argument("--profile", help="write a pyinstrument text profile here")
    args = parser.parse_args(argv)
    if not args.profile:
        run_sync(args.op, args.url, args.local, args.cache)
        return 0
    import asyncio

    from pyinstrument import Profiler

    profiler = Profiler(async_mode="enabled", interval=0.0005)
    profiler.start()
    asyncio.run(run_async(args.op, args.url, args.local, args.cache))
    profiler.stop()
    with open(args.profile, "w") as fh:
        fh.write(profiler.output_text(unicode=True, color=False, show_all=False))
    session = profiler.last_session
    root = session.root_frame() if session is not None else None
    summary = aggregate(root) if root is not None else {"seconds": 0.0, "shares": {}, "top": []}
    with open(args.profile.removesuffix(".txt") + ".json", "w") as fh:
        json.dump(summary, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
