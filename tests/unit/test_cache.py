"""Cache accounting: what is on disk, nested trees counted once, and the eviction decision."""

from __future__ import annotations

from pathlib import Path

from pos3._cache import CacheEntry, Pin, choose_evictions, entries, prune, total_bytes
from pos3._state import StateStore


def _e(path: str, size: int, used: float, pinned: bool = False, outer: str | None = None) -> CacheEntry:
    return CacheEntry(Path(path), size, used, pinned, Path(outer) if outer else None)


def test_a_nested_tree_is_counted_once() -> None:
    trees = [_e("/c/ds", 115, 1), _e("/c/ds/big/one.bin", 52, 2, outer="/c/ds")]
    assert total_bytes(trees) == 115
    assert choose_evictions(trees, 120) == []  # under the limit: nothing goes


def test_eviction_frees_what_is_left_of_a_tree() -> None:
    trees = [_e("/c/a/x", 30, 1, outer="/c/a"), _e("/c/a", 100, 2), _e("/c/b", 50, 3)]
    # Evicting the nested tree first frees 30 (150 -> 120), then its holder frees the remaining 70.
    assert [e.path for e in choose_evictions(trees, 120)] == [Path("/c/a/x")]
    assert [e.path for e in choose_evictions(trees, 60)] == [Path("/c/a")]  # the holder takes x with it
    assert [e.path for e in choose_evictions(trees, 0)] == [Path("/c/a"), Path("/c/b")]


def test_pinned_trees_are_never_chosen() -> None:
    trees = [_e("/c/a", 100, 1, pinned=True), _e("/c/b", 50, 2)]
    assert [e.path for e in choose_evictions(trees, 10)] == [Path("/c/b")]


def _tree(root: Path, files: dict[str, int]) -> None:
    for rel, size in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x" * size)


def test_entries_measure_the_disk_and_prune_keeps_a_tree_under_the_limit(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    ds = cache / "_" / "b" / "ds"
    _tree(ds, {"a.bin": 6000, "big/one.bin": 4000})
    store = StateStore(cache / ".pos3" / "state.db")
    try:
        store.touch_tree(ds, 10_000, 1.0)
        store.touch_tree(ds / "big" / "one.bin", 4000, 2.0)  # the same file, fetched on its own
        found = entries(cache, store)
        assert [(e.path, e.bytes, e.outer) for e in found] == [
            (ds / "big" / "one.bin", 4000, ds), (ds, 10_000, None)]
        assert found[1].last_used == 2.0  # using a tree inside uses the holder
        assert total_bytes(found) == 10_000
        assert prune(cache, 12_000, store) == []  # 10 000 bytes on disk, not 14 000
        assert (ds / "a.bin").exists()
        # Records can be stale; the disk is what counts: a file grown since is measured as it is.
        (ds / "a.bin").write_bytes(b"x" * 9000)
        assert total_bytes(entries(cache, store)) == 13_000
        evicted = prune(cache, 12_000, store)
        assert [e.path for e in evicted] == [ds / "big" / "one.bin"]
        assert (ds / "a.bin").exists() and not (ds / "big" / "one.bin").exists()
    finally:
        store.close()


def test_prune_never_deletes_a_pinned_tree_nor_its_holder(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    ds = cache / "_" / "b" / "ds"
    _tree(ds, {"a.bin": 5000, "sub/c.bin": 1000})
    store = StateStore(cache / ".pos3" / "state.db")
    pin = Pin(cache / ".pos3", ds / "sub")  # a mirror is downloading into ds/sub
    try:
        store.touch_tree(ds, 6000, 1.0)
        assert prune(cache, 0, store) == []
        assert (ds / "a.bin").exists() and (ds / "sub" / "c.bin").exists()
    finally:
        pin.release()
        store.close()
    assert [e.path for e in prune(cache, 0)] == [ds]
    assert not ds.exists()
