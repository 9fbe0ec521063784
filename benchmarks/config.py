"""Benchmark shapes: the full run, a quick look, and the tiny smoke run of the test suite."""

from __future__ import annotations

from dataclasses import dataclass, replace

from benchmarks.datasets import Dataset

KIB, MIB = 1 << 10, 1 << 20


@dataclass(frozen=True)
class Config:
    """Dataset sizes, repetitions and limits; every field can be overridden on the command line.

    ``latencies`` are the fixed first-byte latencies (ms) of the latency scenarios, run on the small
    dataset. ``scale`` is the large tree (cold download and no-op re-sync, ``scale_runs`` runs each,
    only the clients in ``scale_clients``). ``planner_sizes`` are the synthetic listing sizes of the
    pure-planner benchmark (no server).
    """

    small: Dataset
    medium: Dataset
    large: Dataset
    huge: Dataset
    tree: Dataset
    scale: Dataset
    latencies: tuple[int, ...] = (25, 100)
    planner_sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    runs: int = 3
    scale_runs: int = 1
    latency_runs: int = 2
    startup_repeat: int = 5  # runs of each start-up command (median)
    change_fraction: float = 0.01
    hash_bytes: int = 512 * MIB
    timeout: float = 900.0

    def datasets(self) -> list[Dataset]:
        return [d for d in (self.small, self.medium, self.large, self.huge, self.tree, self.scale)
                if d.count and d.size]


PRESETS = {
    "full": Config(
        small=Dataset("small", 2000, 16 * KIB),
        medium=Dataset("medium", 200, MIB),
        large=Dataset("large", 4, 128 * MIB),
        huge=Dataset("huge", 1, 1024 * MIB),
        tree=Dataset("tree", 10_000, 4 * KIB, dirs=100),
        scale=Dataset("scale", 100_000, KIB, dirs=1000),
    ),
    "quick": Config(
        small=Dataset("small", 500, 16 * KIB),
        medium=Dataset("medium", 50, MIB),
        large=Dataset("large", 2, 32 * MIB),
        huge=Dataset("huge", 0, 0),
        tree=Dataset("tree", 2000, 4 * KIB, dirs=20),
        scale=Dataset("scale", 10_000, KIB, dirs=100),
        planner_sizes=(10_000, 100_000),
        runs=1,
        latency_runs=1,
        hash_bytes=64 * MIB,
        timeout=300.0,
    ),
    "smoke": Config(
        small=Dataset("small", 20, KIB),
        medium=Dataset("medium", 3, 256 * KIB),
        large=Dataset("large", 2, 10 * MIB),
        huge=Dataset("huge", 0, 0),
        tree=Dataset("tree", 60, 512, dirs=6),
        scale=Dataset("scale", 120, KIB, dirs=4),
        latencies=(20,),
        startup_repeat=1,
        planner_sizes=(1_000, 3_000),
        runs=1,
        latency_runs=1,
        change_fraction=0.05,
        hash_bytes=8 * MIB,
        timeout=120.0,
    ),
}


def with_overrides(cfg: Config, runs: int | None = None, huge_mib: int | None = None,
                   large: tuple[int, int] | None = None, tree_count: int | None = None,
                   timeout: float | None = None, scale_count: int | None = None,
                   latencies: tuple[int, ...] | None = None, planner_sizes: tuple[int, ...] | None = None
                   ) -> Config:
    if runs is not None:
        cfg = replace(cfg, runs=runs, latency_runs=min(cfg.latency_runs, runs))
    if huge_mib is not None:
        cfg = replace(cfg, huge=Dataset("huge", 1 if huge_mib else 0, huge_mib * MIB))
    if large is not None:
        cfg = replace(cfg, large=Dataset("large", large[0], large[1] * MIB))
    if tree_count is not None:
        cfg = replace(cfg, tree=replace(cfg.tree, count=tree_count))
    if scale_count is not None:
        cfg = replace(cfg, scale=replace(cfg.scale, count=scale_count, dirs=max(1, scale_count // 100)))
    if latencies is not None:
        cfg = replace(cfg, latencies=latencies)
    if planner_sizes is not None:
        cfg = replace(cfg, planner_sizes=planner_sizes)
    if timeout is not None:
        cfg = replace(cfg, timeout=timeout)
    return cfg
