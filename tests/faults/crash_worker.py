"""Run one pos3 transfer in a child process, for the SIGKILL tests: ``python -m tests.faults.crash_worker``.

Arguments: ``download|upload URL CACHE_ROOT [LOCAL]``. Uses the same small transfer sizes as
the fault tests; the endpoint comes from ``AWS_ENDPOINT_URL`` (the fault proxy).
"""

from __future__ import annotations

import sys

import anyio

from tests.faults.conftest import fault_mirror


async def main(mode: str, url: str, cache_root: str, local: str | None) -> None:
    async with fault_mirror(cache_root, part_size=256 << 10 if mode == "download" else None) as m:
        if mode == "download":
            await m.download(url, local)
        else:
            await m.upload(url, local, interval=None)
    print("finished", flush=True)


if __name__ == "__main__":
    args = sys.argv[1:]
    anyio.run(main, args[0], args[1], args[2], args[3] if len(args) > 3 else None)
