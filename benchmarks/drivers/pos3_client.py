"""Drive pos3 (this tree's or the original 0.4.0, same API) for one transfer; run as a script.

    python pos3_client.py download s3://bucket/prefix/ LOCAL CACHE_ROOT
    python pos3_client.py upload   s3://bucket/prefix/ LOCAL CACHE_ROOT
    python pos3_client.py download ... --profile OUT.txt   # under pyinstrument, async core on the main thread
"""

from __future__ import annotations

import argparse
import sys


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
    return 0


if __name__ == "__main__":
    sys.exit(main())
