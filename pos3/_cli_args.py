"""Argument types of the ``pos3`` command: ``--shard RANK/WORLD``, seconds, worker counts and sizes.

Split from `pos3.cli` to keep each module under ~450 lines.
"""

from __future__ import annotations

import argparse

from ._shard import check_shard

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
