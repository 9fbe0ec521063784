"""The scenarios, and the runner that drives every client through them against one moto server."""

from __future__ import annotations

import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import datasets as ds_mod
from benchmarks.clients import Client, client_env
from benchmarks.config import Config
from benchmarks.datasets import Dataset, Manifest
from benchmarks.measure import run as measure
from benchmarks.server import MotoProcess, diff_counts

BUCKET = "bench"


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    dataset: Dataset
    op: str  # download | upload
    kind: str  # cold | noop | changed

    @property
    def sync(self) -> bool:
        return self.kind != "cold"


def scenarios(cfg: Config) -> list[Scenario]:
    c = cfg
    out = [
        Scenario("dl_small", f"download {c.small.describe()}, cold", c.small, "download", "cold"),
        Scenario("dl_medium", f"download {c.medium.describe()}, cold", c.medium, "download", "cold"),
        Scenario("dl_large", f"download {c.large.describe()}, cold", c.large, "download", "cold"),
        Scenario("dl_huge", f"download {c.huge.describe()}, cold", c.huge, "download", "cold"),
        Scenario("resync_noop", f"re-sync {c.tree.count:,} unchanged objects", c.tree, "download", "noop"),
        Scenario("resync_changed", f"re-sync {c.tree.count:,} objects, {c.change_fraction:.0%} rewritten same-size",
                 c.tree, "download", "changed"),
        Scenario("ul_small", f"upload {c.small.describe()}, cold", c.small, "upload", "cold"),
        Scenario("ul_large", f"upload {c.large.describe()}, cold", c.large, "upload", "cold"),
        Scenario("ul_noop", f"upload {c.tree.count:,} unchanged files again", c.tree, "upload", "noop"),
    ]
    return [s for s in out if s.dataset.count and s.dataset.size]


@dataclass
class RunResult:
    scenario: str
    client: str
    run: int
    status: str  # ok | wrong | failed | timeout
    detail: str = ""
    wall: float = 0.0
    cpu: float = 0.0
    user: float = 0.0
    sys: float = 0.0
    rss_mib: float = 0.0
    requests: dict[str, int] = field(default_factory=dict)


@dataclass
class Summary:
    """Medians over a client's runs of one scenario; ``status`` other than ok means no time is reported."""

    scenario: str
    client: str
    status: str  # ok | wrong | failed | timeout | n/a | not installed
    detail: str = ""
    runs: int = 0
    wall: float | None = None
    cpu: float | None = None
    rss_mib: float | None = None
    requests: dict[str, int] = field(default_factory=dict)
    walls: list[float] = field(default_factory=list)


def summarize(scenario: str, client: str, results: list[RunResult]) -> Summary:
    bad = [r for r in results if r.status != "ok"]
    if bad:
        return Summary(scenario, client, bad[0].status, bad[0].detail, runs=len(results))
    if not results:
        return Summary(scenario, client, "failed", "no run")
    kinds = sorted({k for r in results for k in r.requests})
    return Summary(
        scenario, client, "ok", runs=len(results),
        wall=statistics.median(r.wall for r in results),
        cpu=statistics.median(r.cpu for r in results),
        rss_mib=max(r.rss_mib for r in results),
        requests={k: round(statistics.median(r.requests.get(k, 0) for r in results)) for k in kinds},
        walls=[round(r.wall, 4) for r in results],
    )


class Runner:
    """Owns the work dir, the moto server and the datasets; runs scenarios client by client."""

    def __init__(self, cfg: Config, work: Path, server: MotoProcess, clients: list[Client],
                 say: Callable[[str], None]) -> None:
        self.cfg = cfg
        self.work = work
        self.server = server
        self.clients = [c for c in clients if c.available]
        self.say = say
        self.s3: Any = ds_mod.s3_client(server.endpoint)
        self.env = client_env(server.endpoint)
        self.data = work / "data"
        self.runs_dir = work / "runs"
        self.logs = work / "logs"
        self.manifests: dict[str, Manifest] = {}
        self.results: list[RunResult] = []
        self._synced: dict[str, Path] = {}  # client -> a run dir whose dest/ matches the tree

    # ---------------------------------------------------------------- setup

    def prepare(self) -> None:
        self.s3.create_bucket(Bucket=BUCKET)
        for ds in self.cfg.datasets():
            t0 = time.perf_counter()
            self.manifests[ds.name] = ds_mod.materialize(ds, self.data)
            ds_mod.seed(self.s3, BUCKET, ds, self.data)
            self.say(f"  dataset {ds.name}: {ds.describe()} ready in {time.perf_counter() - t0:.1f}s")

    # ---------------------------------------------------------------- one measured process

    def _url(self, prefix: str) -> str:
        return f"s3://{BUCKET}/{prefix}"

    def _measure(self, sc: Scenario, client: Client, run: int, mode: str, prefix: str, local: Path,
                 cache: Path, record: bool = True) -> tuple[RunResult, float]:
        cmd = client.command(sc.op, mode, self._url(prefix), local, cache, self.server.endpoint)
        before = self.server.counts()
        m = measure(cmd, self.env | client.env, self.cfg.timeout, self.logs / f"{sc.key}-{client.key}-{run}.stderr")
        after = self.server.counts()
        res = RunResult(sc.key, client.key, run, "ok", wall=m.wall, cpu=m.cpu, user=m.user, sys=m.sys,
                        rss_mib=m.rss_mib, requests=diff_counts(before, after))
        if m.timed_out:
            res.status, res.detail = "timeout", f"killed after {self.cfg.timeout:.0f}s"
        elif m.returncode != 0:
            res.status, res.detail = "failed", f"exit {m.returncode}: {m.stderr_tail[-300:]}"
        if record:
            self.results.append(res)
        return res, m.wall

    def _check(self, res: RunResult, problem: str | None) -> RunResult:
        if res.status == "ok" and problem is not None:
            res.status, res.detail = "wrong", problem
        self.say(f"    {res.client:<9} run {res.run}: {res.status:<7} {res.wall:7.2f}s wall {res.cpu:6.2f}s cpu "
                 f"{res.rss_mib:6.0f} MiB  {sum(res.requests.values()):>6} req {res.detail[:120]}")
        return res

    def _fresh(self, *parts: str) -> Path:
        path = self.runs_dir.joinpath(*parts)
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    # ---------------------------------------------------------------- scenarios

    def run(self, sc: Scenario) -> None:
        self.say(f"  {sc.title}")
        if sc.kind == "cold":
            self._cold(sc)
        elif sc.op == "download":
            self._resync(sc)
        else:
            self._upload_noop(sc)

    def _order(self, run: int) -> list[Client]:
        n = len(self.clients)
        return self.clients[run % n:] + self.clients[:run % n] if n else []

    def _cold(self, sc: Scenario) -> None:
        manifest = self.manifests[sc.dataset.name]
        for run in range(self.cfg.runs):
            for client in self._order(run):
                base = self._fresh(sc.key, client.key)
                if sc.op == "download":
                    local = base / "dest"
                    res, _ = self._measure(sc, client, run, "cold", sc.dataset.prefix, local, base / "cache")
                    self._check(res, ds_mod.verify_local(local, manifest) if res.status == "ok" else None)
                else:
                    prefix = f"up/{sc.key}/{client.key}/{run}/"
                    res, _ = self._measure(sc, client, run, "cold", prefix, self.data / sc.dataset.name,
                                           base / "cache")
                    self._check(res, ds_mod.verify_remote(self.s3, BUCKET, prefix, manifest)
                                if res.status == "ok" else None)
                    ds_mod.delete_prefix(self.s3, BUCKET, prefix)
                shutil.rmtree(base, ignore_errors=True)

    def _resync(self, sc: Scenario) -> None:
        """Re-sync scenarios share one first download per client: no-op runs leave it as they found it."""
        ds = sc.dataset
        original = self.manifests[ds.name]
        for client in self.clients:
            if not client.syncs:
                continue
            base = self._synced.pop(client.key, None)
            if base is None:
                base = self._fresh("resync", client.key)
                prep, _ = self._measure(sc, client, -1, "sync", ds.prefix, base / "dest", base / "cache",
                                        record=False)
                problem = ds_mod.verify_local(base / "dest", original) if prep.status == "ok" else prep.detail
                if problem is not None:
                    self.results.append(RunResult(sc.key, client.key, 0, "failed", f"first download: {problem}"))
                    self.say(f"    {client.key:<9} first download failed: {problem[:200]}")
                    shutil.rmtree(base, ignore_errors=True)
                    continue
            local, cache = base / "dest", base / "cache"
            current = original
            keep = False
            try:
                for run in range(self.cfg.runs):
                    if sc.kind == "changed":
                        time.sleep(1.1)  # mtime-based peers compare whole seconds; do not race them
                        current = ds_mod.mutate(self.s3, BUCKET, ds, current, self.cfg.change_fraction,
                                                version=run + 1)
                    res, _ = self._measure(sc, client, run, "sync", ds.prefix, local, cache)
                    self._check(res, ds_mod.verify_local(local, current) if res.status == "ok" else None)
                keep = sc.kind == "noop" and all(
                    r.status == "ok" for r in self.results if r.scenario == sc.key and r.client == client.key)
            finally:
                if current is not original:
                    ds_mod.restore(self.s3, BUCKET, ds, self.data, original, current)
                if keep:
                    self._synced[client.key] = base
                else:
                    shutil.rmtree(base, ignore_errors=True)

    def _upload_noop(self, sc: Scenario) -> None:
        ds = sc.dataset
        manifest = self.manifests[ds.name]
        for client in self.clients:
            if not client.syncs:
                continue
            base = self._fresh(sc.key, client.key)
            prefix = f"up/{sc.key}/{client.key}/"
            src = self.data / ds.name
            try:
                prep, _ = self._measure(sc, client, -1, "sync", prefix, src, base / "cache", record=False)
                problem = ds_mod.verify_remote(self.s3, BUCKET, prefix, manifest) if prep.status == "ok" \
                    else prep.detail
                if problem is not None:
                    self.results.append(RunResult(sc.key, client.key, 0, "failed", f"first upload: {problem}"))
                    self.say(f"    {client.key:<9} first upload failed: {problem[:200]}")
                    continue
                for run in range(self.cfg.runs):
                    res, _ = self._measure(sc, client, run, "sync", prefix, src, base / "cache")
                    self._check(res, ds_mod.verify_remote(self.s3, BUCKET, prefix, manifest)
                                if res.status == "ok" else None)
            finally:
                ds_mod.delete_prefix(self.s3, BUCKET, prefix)
                shutil.rmtree(base, ignore_errors=True)

    # ---------------------------------------------------------------- results

    def summaries(self, all_clients: list[Client], scs: list[Scenario]) -> list[Summary]:
        out = []
        for sc in scs:
            for client in all_clients:
                if not client.available:
                    out.append(Summary(sc.key, client.key, "not installed", client.reason))
                elif sc.sync and not client.syncs:
                    out.append(Summary(sc.key, client.key, "n/a", "no sync: every run copies everything"))
                else:
                    out.append(summarize(sc.key, client.key,
                                         [r for r in self.results if r.scenario == sc.key and r.client == client.key]))
        return out

    def profile(self, sc: Scenario, out: Path) -> str | None:
        """Run pos3 once under pyinstrument in ``sc``; return the text profile (None if pyinstrument is missing)."""
        try:
            import pyinstrument  # noqa: F401
        except ImportError:
            return None
        pos3 = next(c for c in self.clients if c.key == "pos3")
        base = self._fresh("profile", sc.key)
        ds = sc.dataset
        try:
            if sc.op == "download":
                local, prefix = base / "dest", ds.prefix
                if sc.sync:
                    self._measure(sc, pos3, -1, "sync", prefix, local, base / "cache", record=False)
            else:
                local, prefix = self.data / ds.name, f"up/profile/{sc.key}/"
                if sc.sync:
                    self._measure(sc, pos3, -1, "sync", prefix, local, base / "cache", record=False)
            cmd = pos3.command(sc.op, "sync", self._url(prefix), local, base / "cache", self.server.endpoint)
            cmd += ["--profile", str(out)]
            measure(cmd, self.env | pos3.env, self.cfg.timeout, self.logs / f"profile-{sc.key}.stderr")
            return out.read_text() if out.exists() else None
        finally:
            if sc.op == "upload":
                ds_mod.delete_prefix(self.s3, BUCKET, f"up/profile/{sc.key}/")
            shutil.rmtree(base, ignore_errors=True)


def as_dict(obj: Any) -> Any:
    return asdict(obj)
