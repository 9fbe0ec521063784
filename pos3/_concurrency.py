"""How many requests to keep in flight. Pure.

Against a real server most of a small request's time is latency: with N requests in flight a
client cannot pass N / latency objects per second, whatever its CPU does (10 in flight and a
50 ms round trip: 200 objects/s). So pos3 keeps many small requests in flight, and fewer, larger
ranges for large objects; both bounded by the memory their bodies hold at once.

The rule (documented in docs/performance.md, "Requests in flight"):

* An explicit ``max_workers`` wins: exactly that many requests in flight.
* Otherwise, for one transfer plan: ``IN_FLIGHT_MEMORY`` divided by the bytes one request holds
  (the larger of the 90th-percentile object size and ``PER_REQUEST_FLOOR``), between
  ``MIN_IN_FLIGHT`` and ``MAX_IN_FLIGHT``. 16 KiB objects: 256 in flight; 1 MiB objects: 64.
* Objects large enough for ranged GETs are not counted here: they are fetched in a few large
  ranges shared between them (`pos3._policy.download_part_size`), whose bodies are streamed,
  not held.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = [
    "IN_FLIGHT_MEMORY",
    "MAX_IN_FLIGHT",
    "MIN_IN_FLIGHT",
    "PER_REQUEST_FLOOR",
    "connection_pool_size",
    "requests_in_flight",
]

MAX_IN_FLIGHT = 256  # as s5cmd: enough for 100 ms of latency at 2,500 objects/s
MIN_IN_FLIGHT = 16
IN_FLIGHT_MEMORY = 64 << 20  # bytes held by request bodies at once, at most (about)
PER_REQUEST_FLOOR = 256 << 10  # a request costs about this much whatever its size (buffers, socket)


def requests_in_flight(sizes: Iterable[int], explicit: int | None = None) -> int:
    """Requests to keep in flight for objects of these ``sizes`` (those sent whole, not in ranges).

    Args:
        sizes: Sizes in bytes of the objects the plan transfers whole.
        explicit: The user's ``max_workers``; wins when given.

    Returns:
        A number between `MIN_IN_FLIGHT` and `MAX_IN_FLIGHT`, or ``explicit``.
    """
    if explicit is not None:
        return explicit
    ordered = sorted(sizes)
    if not ordered:
        return MIN_IN_FLIGHT
    p90 = ordered[min(len(ordered) - 1, math.ceil(0.9 * len(ordered)) - 1)]
    per_request = max(p90, PER_REQUEST_FLOOR)
    return max(MIN_IN_FLIGHT, min(MAX_IN_FLIGHT, IN_FLIGHT_MEMORY // per_request))


def connection_pool_size(explicit: int | None) -> int:
    """Connections the HTTP client may open: every request in flight, plus room for ranges and listings."""
    if explicit is not None:
        return max(explicit * 2, 10)
    return MAX_IN_FLIGHT + 32
