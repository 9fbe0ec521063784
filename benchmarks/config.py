"""Benchmark shapes: the full run, a quick look, and the tiny smoke run of the test suite."""

from __future__ import annotations

from dataclasses import dataclass, replace

from benchmarks.datasets import Dataset

KIB, MIB = 1 << 10, 1 << 20


@dataclass(frozen=True)
class Config:
    """Dataset sizes, repetitions and limits; every field can be overridden on the command line."""

    small: Dataset
    medium: Dataset
    large: Dataset
    huge: Dataset
    tree: Dataset
    runs: int = 3
    change_fraction: float = 0.01
    hash_bytes: int = 512 * MIB
    timeout: float = 900.0

    def datasets(self) -> list[Dataset]:
        return [d for d in (self.small, self.medium, self.large, self.huge, self.tree) if d.count and d.size]


PRESETS = {
    "full": Config(
        small=Dataset("small", 2000, 16 * KIB),
        medium=Dataset("medium", 200, MIB),
        large=Dataset("large", 4, 128 * MIB),
        huge=Dataset("huge", 1, 1024 * MIB),
        tree=Dataset("tree", 10_000, 4 * KIB, dirs=100),
    ),
    "quick": Config(
        small=Dataset("small", 500, 16 * KIB),
        medium=Dataset("medium", 50, MIB),
        large=Dataset("large", 2, 32 * MIB),
        huge=Dataset("huge", 0, 0),
        tree=Dataset("tree", 2000, 4 * KIB, dirs=20),
        runs=1,
        hash_bytes=64 * MIB,
        timeout=300.0,
    ),
    "smoke": Config(
        small=Dataset("small", 20, KIB),
        medium=Dataset("medium", 3, 256 * KIB),
        large=Dataset("large", 2, 10 * MIB),
        huge=Dataset("huge", 0, 0),
        tree=Dataset("tree", 60, 512, dirs=6),
        runs=1,
        change_fraction=0.05,
        hash_bytes=8 * MIB,
        timeout=120.0,
    ),
}


def with_overrides(cfg: Config, runs: int | None = None, huge_mib: int | None = None,
                   large: tuple[int, int] | None = None, tree_count: int | None = None,
                   timeout: float | None = None) -> Config:
    if runs is not None:
        cfg = replace(cfg, runs=runs)
    if huge_mib is not None:
        cfg = replace(cfg, huge=Dataset("huge", 1 if huge_mib else 0, huge_mib * MIB))
    if large is not None:
        cfg = replace(cfg, large=Dataset("large", large[0], large[1] * MIB))
    if tree_count is not None:
        cfg = replace(cfg, tree=replace(cfg.tree, count=tree_count))
    if timeout is not None:
        cfg = replace(cfg, timeout=timeout)
    return cfg
