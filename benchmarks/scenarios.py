"""The scenarios, and the runner that drives every client through them against one server."""

from __future__ import annotations

import json
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
from benchmarks.measure import Profile
from benchmarks.measure import run as measure
from benchmarks.server import Endpoint, diff_counts

BUCKET = "bench"


# The peers that take part in the long scenarios (latency, scale), where every client costs minutes.
LATENCY_CLIENTS = frozenset({"pos3", "pos3_cli", "s5cmd", "awscli", "rclone"})
SCALE_CLIENTS = frozenset({"pos3", "pos3_cli", "s5cmd"})


@dataclass(frozen=True)
class Scenario:
    """One measured situation. ``group`` says which table and chart it belongs to."""

    key: str
    title: str
    dataset: Dataset
    op: str  # download | upload
    kind: str  # cold | noop | changed
    group: str = "loopback"  # loopback | latency | scale
    latency_ms: int = 0  # fixed first-byte latency the server adds to every request
    runs: int | None = None  # None: the config's runs
    clients: frozenset[str] | None = None  # None: every client

    @property
    def sync(self) -> bool:
        return self.kind != "cold"

    def takes(self, client: str) -> bool:
        return self.clients is None or client in self.clients


def scenarios(cfg: Config, can_delay: bool = True, latency_clients: frozenset[str] = LATENCY_CLIENTS,
              scale_clients: frozenset[str] = SCALE_CLIENTS, tree_clients: frozenset[str] | None = None
              ) -> list[Scenario]:
    """Every scenario of ``cfg`` in run order (a re-sync follows the cold download it starts from).

    The ``*_clients`` sets name the clients of the long scenarios (``None``: every client).
    """
    c = cfg
    out = [
        Scenario("dl_small", f"download {c.small.describe()}, cold", c.small, "download", "cold"),
        Scenario("resync_small_noop", f"re-sync {c.small.count:,} unchanged objects", c.small, "download", "noop"),
        Scenario("dl_medium", f"download {c.medium.describe()}, cold", c.medium, "download", "cold"),
        Scenario("dl_large", f"download {c.large.describe()}, cold", c.large, "download", "cold"),
        Scenario("dl_huge", f"download {c.huge.describe()}, cold", c.huge, "download", "cold"),
        Scenario("resync_noop", f"re-sync {c.tree.count:,} unchanged objects", c.tree, "download", "noop",
                 clients=tree_clients),
        Scenario("resync_changed", f"re-sync {c.tree.count:,} objects, {c.change_fraction:.0%} rewritten same-size",
                 c.tree, "download", "changed", clients=tree_clients),
        Scenario("ul_small", f"upload {c.small.describe()}, cold", c.small, "upload", "cold"),
        Scenario("ul_large", f"upload {c.large.describe()}, cold", c.large, "upload", "cold"),
        Scenario("ul_noop", f"upload {c.tree.count:,} unchanged files again", c.tree, "upload", "noop",
                 clients=tree_clients),
    ]
    if can_delay:
        for ms in c.latencies:
            for op, verb in (("download", "dl"), ("upload", "ul")):
                out.append(Scenario(f"{verb}_small_{ms}ms", f"{op} {c.small.describe()}, {ms} ms latency", c.small,
                                    op, "cold", group="latency", latency_ms=ms, runs=c.latency_runs,
                                    clients=latency_clients))
    out += [
        Scenario("scale_dl", f"download {c.scale.describe()}, cold", c.scale, "download", "cold", group="scale",
                 runs=c.scale_runs, clients=scale_clients),
        Scenario("scale_noop", f"re-sync {c.scale.count:,} unchanged objects", c.scale, "download", "noop",
                 group="scale", runs=c.scale_runs, clients=scale_clients),
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

    def __init__(self, cfg: Config, work: Path, server: Endpoint, clients: list[Client],
                 say: Callable[[str], None], bucket: str = BUCKET) -> None:
        self.cfg = cfg
        self.work = work
        self.server = server
        self.bucket = bucket
        self.clients = [c for c in clients if c.available]
        self.say = say
        self.s3: Any = ds_mod.s3_client(server.endpoint, server.access_key, server.secret_key, server.region)
        self.env = client_env(server.endpoint, server.access_key, server.secret_key, server.region)
        self.data = work / "data"
        self.runs_dir = work / "runs"
        self.kept = work / "kept"  # cache roots of clients that keep theirs between runs
        self.logs = work / "logs"
        self.manifests: dict[str, Manifest] = {}
        self.results: list[RunResult] = []
        self._synced: dict[tuple[str, str], Path] = {}  # (client, dataset) -> a run dir whose dest/ matches it
        self._resynced: set[str] = set()  # datasets a later re-sync scenario starts from

    # ---------------------------------------------------------------- setup

    def prepare(self, scs: list[Scenario]) -> None:
        """Create the bucket (if needed) and seed the datasets that ``scs`` use (kept when already there)."""
        try:
            self.s3.create_bucket(Bucket=self.bucket)
        except Exception as exc:  # an external endpoint where the bucket is left from an earlier run
            if "BucketAlready" not in type(exc).__name__ + str(exc):
                raise
        shutil.rmtree(self.kept, ignore_errors=True)
        used = {s.dataset.name for s in scs}
        self._resynced = {s.dataset.name for s in scs if s.op == "download" and s.sync}
        for ds in self.cfg.datasets():
            if ds.name not in used:
                continue
            t0 = time.perf_counter()
            self.manifests[ds.name] = ds_mod.materialize(ds, self.data)
            if ds_mod.verify_remote(self.s3, self.bucket, ds.prefix, self.manifests[ds.name], etag_only=True):
                ds_mod.delete_prefix(self.s3, self.bucket, ds.prefix)
                ds_mod.seed(self.s3, self.bucket, ds, self.data)
            self.say(f"  dataset {ds.name}: {ds.describe()} ready in {time.perf_counter() - t0:.1f}s")

    # ---------------------------------------------------------------- one measured process

    def _url(self, prefix: str) -> str:
        return f"s3://{self.bucket}/{prefix}"

    def _cache(self, client: Client, fresh: Path) -> Path:
        return self.kept / client.key if client.keeps_cache else fresh

    def _measure(self, sc: Scenario, client: Client, run: int, mode: str, prefix: str, local: Path,
                 cache: Path, record: bool = True) -> tuple[RunResult, float]:
        cmd = client.command(sc.op, mode, self._url(prefix), local, self._cache(client, cache), self.server.endpoint)
        before = self.server.counts()
        if sc.latency_ms:
            self.server.set_latency(sc.latency_ms)
        try:
            m = measure(cmd, self.env | client.env, self.cfg.timeout,
                        self.logs / f"{sc.key}-{client.key}-{run}.stderr")
        finally:
            if sc.latency_ms:
                self.server.set_latency(0)
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

    def _clients(self, sc: Scenario) -> list[Client]:
        return [c for c in self.clients if sc.takes(c.key)]

    def _runs(self, sc: Scenario) -> int:
        return sc.runs if sc.runs is not None else self.cfg.runs

    def _order(self, sc: Scenario, run: int) -> list[Client]:
        clients = self._clients(sc)
        n = len(clients)
        return clients[run % n:] + clients[:run % n] if n else []

    def _keep(self, client: Client, ds: Dataset, base: Path) -> None:
        """Keep ``base`` (its dest/ matches ``ds``) as the starting point of the next re-sync of ``ds``.

        It stays where it is: pos3's records name absolute paths (and inodes), so a moved tree
        would no longer be the tree its state store describes.
        """
        old = self._synced.pop((client.key, ds.name), None)
        if old is not None and old != base:
            shutil.rmtree(old, ignore_errors=True)
        self._synced[(client.key, ds.name)] = base

    def _cold(self, sc: Scenario) -> None:
        manifest = self.manifests[sc.dataset.name]
        runs = self._runs(sc)
        for run in range(runs):
            for client in self._order(sc, run):
                base = self._fresh(sc.key, client.key)
                kept = False
                if sc.op == "download":
                    local = base / "dest"
                    res, _ = self._measure(sc, client, run, "cold", sc.dataset.prefix, local, base / "cache")
                    self._check(res, ds_mod.verify_local(local, manifest) if res.status == "ok" else None)
                    if (res.status == "ok" and run == runs - 1 and not sc.latency_ms and client.syncs
                            and sc.dataset.name in self._resynced):
                        # A later re-sync of this dataset starts from this download: no extra full download.
                        self._keep(client, sc.dataset, base)
                        kept = True
                else:
                    prefix = f"up/{sc.key}/{client.key}/{run}/"
                    res, _ = self._measure(sc, client, run, "cold", prefix, self.data / sc.dataset.name,
                                           base / "cache")
                    self._check(res, ds_mod.verify_remote(self.s3, self.bucket, prefix, manifest)
                                if res.status == "ok" else None)
                    ds_mod.delete_prefix(self.s3, self.bucket, prefix)
                if not kept:
                    shutil.rmtree(base, ignore_errors=True)

    def _resync(self, sc: Scenario) -> None:
        """Re-sync scenarios share one first download per client: no-op runs leave it as they found it."""
        ds = sc.dataset
        original = self.manifests[ds.name]
        for client in self._clients(sc):
            if not client.syncs:
                continue
            base = self._synced.pop((client.key, ds.name), None)
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
                for run in range(self._runs(sc)):
                    if sc.kind == "changed":
                        time.sleep(1.1)  # mtime-based peers compare whole seconds; do not race them
                        current = ds_mod.mutate(self.s3, self.bucket, ds, current, self.cfg.change_fraction,
                                                version=run + 1)
                    res, _ = self._measure(sc, client, run, "sync", ds.prefix, local, cache)
                    self._check(res, ds_mod.verify_local(local, current) if res.status == "ok" else None)
                keep = sc.kind == "noop" and all(
                    r.status == "ok" for r in self.results if r.scenario == sc.key and r.client == client.key)
            finally:
                if current is not original:
                    ds_mod.restore(self.s3, self.bucket, ds, self.data, original, current)
                if keep:
                    self._synced[(client.key, ds.name)] = base
                else:
                    shutil.rmtree(base, ignore_errors=True)

    def _upload_noop(self, sc: Scenario) -> None:
        ds = sc.dataset
        manifest = self.manifests[ds.name]
        for client in self._clients(sc):
            if not client.syncs:
                continue
            base = self._fresh(sc.key, client.key)
            prefix = f"up/{sc.key}/{client.key}/"
            src = self.data / ds.name
            try:
                prep, _ = self._measure(sc, client, -1, "sync", prefix, src, base / "cache", record=False)
                problem = ds_mod.verify_remote(self.s3, self.bucket, prefix, manifest) if prep.status == "ok" \
                    else prep.detail
                if problem is not None:
                    self.results.append(RunResult(sc.key, client.key, 0, "failed", f"first upload: {problem}"))
                    self.say(f"    {client.key:<9} first upload failed: {problem[:200]}")
                    continue
                for run in range(self._runs(sc)):
                    res, _ = self._measure(sc, client, run, "sync", prefix, src, base / "cache")
                    self._check(res, ds_mod.verify_remote(self.s3, self.bucket, prefix, manifest)
                                if res.status == "ok" else None)
            finally:
                ds_mod.delete_prefix(self.s3, self.bucket, prefix)
                shutil.rmtree(base, ignore_errors=True)

    # ---------------------------------------------------------------- results

    def summaries(self, all_clients: list[Client], scs: list[Scenario]) -> list[Summary]:
        out = []
        for sc in scs:
            for client in all_clients:
                if not client.available:
                    out.append(Summary(sc.key, client.key, "not installed", client.reason))
                elif not sc.takes(client.key):
                    out.append(Summary(sc.key, client.key, "n/a", "not run in this scenario (time)"))
                elif sc.sync and not client.syncs:
                    out.append(Summary(sc.key, client.key, "n/a", "no sync: every run copies everything"))
                else:
                    out.append(summarize(sc.key, client.key,
                                         [r for r in self.results if r.scenario == sc.key and r.client == client.key]))
        return out

    def floor(self, python: str) -> dict[str, float]:
        """CPU per GET and PUT of bare aiobotocore on the small dataset (`benchmarks.floor`); {} if it failed."""
        ds = self.cfg.small
        if ds.name not in self.manifests:
            return {}
        out = self.logs / "floor.json"
        out.unlink(missing_ok=True)
        s = self.server
        cmd = [python, "-m", "benchmarks.floor", s.endpoint, s.access_key, s.secret_key, s.region, self.bucket,
               ds.prefix, str(min(ds.count, 1000)), str(out)]
        m = measure(cmd, self.env, self.cfg.timeout, self.logs / "floor.stderr", cwd=Path(__file__).parent.parent)
        if m.returncode != 0 or not out.exists():
            self.say(f"  bare aiobotocore floor failed: {m.stderr_tail[-300:]}")
            return {}
        data: dict[str, float] = json.loads(out.read_text())
        return data

    def profile(self, sc: Scenario, out: Path) -> Profile | None:
        """Run pos3 once under pyinstrument in ``sc``; None if pyinstrument is missing or the run failed."""
        try:
            import pyinstrument  # noqa: F401
        except ImportError:
            return None
        pos3 = next(c for c in self.clients if c.key == "pos3")
        base = self._fresh("profile", sc.key)
        ds = sc.dataset
        kept = self._synced.get((pos3.key, ds.name))
        try:
            if sc.op == "download" and sc.sync and kept is not None:
                local, prefix, base = kept / "dest", ds.prefix, kept  # in sync since the scenario ran
            elif sc.op == "download":
                local, prefix = base / "dest", ds.prefix
                if sc.sync:
                    self._measure(sc, pos3, -1, "sync", prefix, local, base / "cache", record=False)
            else:
                local, prefix = self.data / ds.name, f"up/profile/{sc.key}/"
                if sc.sync:
                    self._measure(sc, pos3, -1, "sync", prefix, local, base / "cache", record=False)
            cmd = pos3.command(sc.op, "sync", self._url(prefix), local, base / "cache", self.server.endpoint)
            cmd += ["--profile", str(out)]
            if sc.latency_ms:
                self.server.set_latency(sc.latency_ms)
            try:
                measure(cmd, self.env | pos3.env, self.cfg.timeout, self.logs / f"profile-{sc.key}.stderr")
            finally:
                if sc.latency_ms:
                    self.server.set_latency(0)
            summary = out.with_suffix(".json")
            if not out.exists() or not summary.exists():
                return None
            data = json.loads(summary.read_text())
            return Profile(sc.key, out.read_text(), data["seconds"], data["shares"],
                           [(name, share) for name, share in data["top"]])
        finally:
            if sc.op == "upload":
                ds_mod.delete_prefix(self.s3, self.bucket, f"up/profile/{sc.key}/")
            shutil.rmtree(base, ignore_errors=True)


def as_dict(obj: Any) -> Any:
    return asdict(obj)
