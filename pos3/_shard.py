"""Split a prefix between the ranks of a distributed job, without coordination. Pure.

Every rank computes the same assignment from the same listing: files sorted by size (largest
first, then by path) go one by one to the rank with the fewest bytes so far (ties: the lowest
rank). The result is deterministic, the shards are disjoint and cover the prefix, and the bytes
of any two shards differ by at most the size of one file.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping

__all__ = ["check_shard", "shard_members"]


def check_shard(shard: object) -> tuple[int, int] | None:
    """Validate a ``(rank, world_size)`` pair; ``None`` means the whole prefix.

    Raises:
        ValueError: Not two integers with ``0 <= rank < world_size``.
    """
    if shard is None:
        return None
    if (
        not isinstance(shard, tuple | list)
        or len(shard) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in shard)
    ):
        raise ValueError(f"shard must be (rank, world_size) as two integers, not {shard!r}")
    rank, world = int(shard[0]), int(shard[1])
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"shard {shard!r}: need 0 <= rank < world_size and world_size >= 1")
    return rank, world


def shard_members(sizes: Mapping[str, int], rank: int, world: int) -> set[str]:
    """The relative paths of ``sizes`` that belong to shard ``rank`` of ``world``."""
    heap = [(0, r) for r in range(world)]
    mine: set[str] = set()
    for rel, size in sorted(sizes.items(), key=lambda kv: (-kv[1], kv[0])):
        load, r = heapq.heappop(heap)
        if r == rank:
            mine.add(rel)
        heapq.heappush(heap, (load + size, r))
    return mine
