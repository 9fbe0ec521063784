"""``python -m benchmarks``: pos3 against its peers on a local moto server (or any endpoint); tables, charts, docs.

Examples (from the repository root)::

    python -m benchmarks                       # the full run; updates docs/performance.md
    python -m benchmarks --preset quick        # a few minutes, one run each
    python -m benchmarks --preset smoke --no-install --work-dir /tmp/b --no-docs
    BENCH_ENDPOINT=http://127.0.0.1:7480 BENCH_ACCESS_KEY=... BENCH_SECRET_KEY=... \
        python -m benchmarks --endpoint-name "Ceph RGW"   # another server; its own section of the page
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from benchmarks import config as config_mod
from benchmarks import report
from benchmarks.clients import PEERS, REPO, Client, discover, snapshot_pos3
from benchmarks.datasets import Dataset, chunks, human_bytes
from benchmarks.measure import run as measure
from benchmarks.scenarios import LATENCY_CLIENTS, SCALE_CLIENTS, Runner, scenarios
from benchmarks.server import Endpoint, ExternalEndpoint, MotoProcess


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", choices=sorted(config_mod.PRESETS), default="full")
    p.add_argument("--runs", type=int, help="runs per client and scenario (median reported)")
    p.add_argument("--clients", default=",".join(["pos3", *PEERS]),
                   help="comma-separated: pos3," + ",".join(PEERS))
    p.add_argument("--scenarios", help="comma-separated scenario keys (default: all)")
    p.add_argument("--huge-mib", type=int, help="size of the single huge object in MiB (0: skip that scenario)")
    p.add_argument("--large", help="COUNTxMIB for the large-file scenarios, e.g. 4x128")
    p.add_argument("--tree", type=int, help="objects in the re-sync tree")
    p.add_argument("--scale", type=int, help="objects (1 KiB each) in the scale tree")
    p.add_argument("--latencies", help="comma-separated first-byte latencies in ms (e.g. 25,100; 0: none)")
    p.add_argument("--latency-clients", default=",".join(sorted(LATENCY_CLIENTS)),
                   help="clients of the latency scenarios (default: %(default)s)")
    p.add_argument("--scale-clients", default=",".join(sorted(SCALE_CLIENTS)),
                   help="clients of the scale scenarios (default: %(default)s)")
    p.add_argument("--tree-clients", help="clients of the 10,000-object tree scenarios (default: all)")
    p.add_argument("--planner", help="comma-separated sizes of the pure-planner benchmark (0: skip it)")
    p.add_argument("--endpoint", default=os.environ.get("BENCH_ENDPOINT"),
                   help="benchmark this S3 endpoint instead of a local moto server (env BENCH_ENDPOINT)")
    p.add_argument("--access-key", default=os.environ.get("BENCH_ACCESS_KEY", "testing"),
                   help="its access key (env BENCH_ACCESS_KEY)")
    p.add_argument("--secret-key", default=os.environ.get("BENCH_SECRET_KEY", "testing"),
                   help="its secret key (env BENCH_SECRET_KEY)")
    p.add_argument("--region", default=os.environ.get("BENCH_REGION", "us-east-1"), help="env BENCH_REGION")
    p.add_argument("--endpoint-name", default=os.environ.get("BENCH_ENDPOINT_NAME", ""),
                   help="how the page names that server, e.g. 'Ceph RGW 18.2' (env BENCH_ENDPOINT_NAME)")
    p.add_argument("--bucket", default=os.environ.get("BENCH_BUCKET", "bench"),
                   help="bucket to use (created when missing; datasets are kept there between runs)")
    p.add_argument("--timeout", type=float, help="seconds before a client process is killed")
    p.add_argument("--work-dir", type=Path, default=REPO / "benchmarks" / ".work")
    p.add_argument("--results", type=Path,
                   help="results JSON (default: benchmarks/results/results.json, or results-<server>.json)")
    p.add_argument("--docs", type=Path, default=REPO / "docs" / "performance.md")
    p.add_argument("--img-dir", type=Path, default=REPO / "docs" / "img")
    p.add_argument("--no-docs", action="store_true", help="leave docs/ alone (results JSON and stdout only)")
    p.add_argument("--no-install", action="store_true", help="do not create peer venvs; use those already there")
    p.add_argument("--pos3-snapshot", metavar="GIT_REF",
                   help="benchmark pos3/ as committed at this ref (e.g. HEAD) instead of the work tree")
    p.add_argument("--scope", default="",
                   help="one sentence for the page's machine table when the run is a subset (what was left out, why)")
    p.add_argument("--no-profile", action="store_true", help="do not profile scenarios that miss a target")
    p.add_argument("--profile", metavar="KEYS",
                   help="profile only these scenarios (comma-separated), when they miss a target")
    return p.parse_args(argv)


def hashing_extras(work: Path, size: int) -> dict[str, str]:
    """Throughput of pos3's xxh3-128 fingerprints (file, and in memory) and of xxh3 + MD5."""
    from pos3 import _hashing

    path = work / "hash.bin"
    ds = Dataset("hash", 1, size)
    if not path.exists() or path.stat().st_size != size:
        with open(path, "wb") as fh:
            for part in chunks(ds, "hash.bin"):
                fh.write(part)
    _hashing.file_digests(path)  # warm the page cache

    def rate(fn: Any) -> float:
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return size / statistics.median(times) / 1e9

    buf = path.read_bytes()

    def in_memory() -> None:
        h = _hashing.Hasher()
        view = memoryview(buf)
        for i in range(0, len(buf), _hashing.CHUNK):
            h.update(view[i:i + _hashing.CHUNK])

    out = {
        f"xxh3-128 of a {human_bytes(size)} file (page cache), pos3._hashing.file_digests":
            f"{rate(lambda: _hashing.file_digests(path)):.2f} GB/s",
        "xxh3-128 in memory, pos3._hashing.Hasher": f"{rate(in_memory):.2f} GB/s",
        "xxh3-128 + MD5 of the same file (md5=True)": f"{rate(lambda: _hashing.file_digests(path, md5=True)):.2f} GB/s",
    }
    path.unlink()
    return out


def startup_times(clients: list[Client], env: dict[str, str], work: Path, repeat: int = 5) -> dict[str, float]:
    """Median wall and CPU time of ``import pos3``, ``pos3 --help`` and ``pos3 --version`` (whole process).

    Keys are ``"<command>"`` (wall) and ``"<command> cpu"``; ``python -c pass`` is measured the same
    way as the baseline. Each command runs once first, unmeasured, so that Python's bytecode cache is
    written, as an installed package has it.
    """
    pos3 = clients[0]
    cli = next((c for c in clients if c.key == "pos3_cli" and c.available), None)
    cmds = {"python -c pass": [pos3.python, "-c", "pass"], "import pos3": [pos3.python, "-c", "import pos3"]}
    if cli is not None:
        cmds["pos3 --help"] = [cli.binary, "--help"]
        cmds["pos3 --version"] = [cli.binary, "--version"]
    out: dict[str, float] = {}
    for name, cmd in cmds.items():
        walls, cpus = [], []
        measure(cmd, env | pos3.env, 60, work / "logs" / "startup-warm.stderr")
        for i in range(repeat):
            m = measure(cmd, env | pos3.env, 60, work / "logs" / f"startup-{i}.stderr")
            if m.returncode != 0:
                break
            walls.append(m.wall)
            cpus.append(m.cpu)
        if walls:
            out[name] = statistics.median(walls)
            out[name + " cpu"] = statistics.median(cpus)
    probe = "import sys, pos3; print(int('aiobotocore' in sys.modules))"
    res = subprocess.run([pos3.python, "-c", probe], env=env | pos3.env, capture_output=True, text=True,
                         timeout=60, check=False)
    out["aiobotocore imported by import pos3"] = float(res.stdout.strip() == "1")
    return out


def planner_bench(sizes: tuple[int, ...], work: Path, python: str, env: dict[str, str],
                  say: Any) -> list[dict[str, float]]:
    """Run `benchmarks.planner` once per size, each in its own process (its own peak RSS)."""
    out = []
    for n in sizes:
        if n <= 0:
            continue
        dest = work / "logs" / f"planner-{n}.json"
        dest.unlink(missing_ok=True)
        m = measure([python, "-m", "benchmarks.planner", str(n), str(work / "planner"), str(dest)],
                    env | {"PYTHONPATH": str(REPO) + os.pathsep + env.get("PYTHONPATH", "")}, 1800,
                    work / "logs" / f"planner-{n}.stderr", cwd=REPO)
        if m.returncode != 0 or not dest.exists():
            say(f"  planner {n:,}: failed: {m.stderr_tail[-300:]}")
            out.append({"objects": float(n), "failed": 1.0})
            continue
        row = json.loads(dest.read_text())
        row["peak_rss_mib"] = m.rss_mib
        say(f"  planner {n:,}: {row['total']:.2f} s CPU ({row['records']:.2f} records, {row['keys']:.2f} keys, "
            f"{row['plan']:.2f} plan), peak RSS {m.rss_mib:.0f} MiB")
        out.append(row)
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "endpoint"


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    cfg = config_mod.PRESETS[args.preset]
    large = tuple(int(x) for x in args.large.lower().split("x")) if args.large else None

    def ints(text: str | None) -> tuple[int, ...] | None:
        return None if text is None else tuple(int(x) for x in text.split(",") if x.strip() and int(x))

    cfg = config_mod.with_overrides(cfg, runs=args.runs, huge_mib=args.huge_mib,
                                    large=(large[0], large[1]) if large and len(large) == 2 else None,
                                    tree_count=args.tree, timeout=args.timeout, scale_count=args.scale,
                                    latencies=ints(args.latencies), planner_sizes=ints(args.planner))
    section = _slug(args.endpoint_name or args.endpoint) if args.endpoint else "moto"
    results_path: Path = args.results or (REPO / "benchmarks" / "results" /
                                          ("results.json" if section == "moto" else f"results-{section}.json"))
    work: Path = args.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(work / "runs", ignore_errors=True)
    (work / "logs").mkdir(exist_ok=True)
    started = time.perf_counter()

    def say(msg: str) -> None:
        print(f"[{time.perf_counter() - started:7.1f}s] {msg}", flush=True)

    say(f"preset {args.preset}, {cfg.runs} run(s) per client and scenario, work dir {work}")
    notes: list[str] = []
    wanted = [c.strip() for c in args.clients.split(",") if c.strip()]
    clients = discover(work, wanted, install=not args.no_install, log=notes)
    if args.pos3_snapshot:
        folder, sha = snapshot_pos3(args.pos3_snapshot, work)
        for c in clients:
            if c.key in ("pos3", "pos3_cli"):
                c.env = {"PYTHONPATH": str(folder)}
                c.version += f" (git {sha}, committed snapshot)"
    for n in notes:
        say(n)
    for c in clients:
        say(f"client {c.label}: {c.version if c.available else c.reason}")
    def keys(text: str | None) -> frozenset[str] | None:
        return None if text is None else frozenset(k.strip() for k in text.split(",") if k.strip()) | {"pos3"}

    scs = scenarios(cfg, can_delay=not args.endpoint, latency_clients=keys(args.latency_clients) or LATENCY_CLIENTS,
                    scale_clients=keys(args.scale_clients) or SCALE_CLIENTS, tree_clients=keys(args.tree_clients))
    if args.scenarios:
        chosen = {s.strip() for s in args.scenarios.split(",")}
        unknown = chosen - {s.key for s in scs}
        if unknown:
            raise SystemExit(f"unknown scenario(s) {sorted(unknown)}; choose from {[s.key for s in scs]}")
        scs = [s for s in scs if s.key in chosen]

    server: Endpoint
    if args.endpoint:
        server = ExternalEndpoint(args.endpoint, args.access_key, args.secret_key, args.region,
                                  args.endpoint_name or args.endpoint)
    else:
        server = MotoProcess(log_path=str(work / "logs" / "moto.log")).start()
    say(f"{server.name} server on {server.endpoint}")
    profiles: dict[str, report.Profile] = {}
    profile_dir = args.docs.parent / "bench" / section
    summaries = []
    floor: dict[str, float] = {}
    server_rss: float | None = None
    try:
        runner = Runner(cfg, work, server, clients, say, bucket=args.bucket)
        runner.prepare(scs)
        for sc in scs:
            runner.run(sc)
        summaries = runner.summaries(clients, scs)
        say("bare aiobotocore: CPU per GET and PUT")
        floor = runner.floor(clients[0].python)
        if floor:
            say(f"  {floor['get_ms']:.2f} ms per GET, {floor['put_ms']:.2f} ms per PUT")
        server_rss = server.rss_mib()
        probe = report.Measured(summaries, scs, {c.key: c.label for c in clients}, cfg, {}, [],
                                server.counts_requests, floor)
        targets = report.evaluate(probe, section)
        if not args.no_profile:
            only = {k.strip() for k in args.profile.split(",")} if args.profile else None
            for key in dict.fromkeys(t.scenario for t in targets if t.status == "not met" and t.scenario):
                if only is not None and key not in only:
                    continue
                sc = next(s for s in scs if s.key == key)
                if sc.group == "scale" and not sc.sync:
                    say(f"not profiling {key}: a cold download at scale under the profiler costs too long "
                        "(the small-file profiles show the same per-request work)")
                    continue
                say(f"profiling pos3 in {key} (a target is not met)")
                out = work / "logs" / f"profile-{key}.txt"
                prof = runner.profile(sc, out)
                if prof is None:
                    say("  pyinstrument is not installed; no profile")
                    continue
                profiles[key] = prof
    finally:
        server.stop()

    say("measuring start-up times")
    startup = startup_times(clients, runner.env, work, cfg.startup_repeat)
    planner: list[dict[str, float]] = []
    if cfg.planner_sizes:
        say("pure planner at scale")
        planner = planner_bench(cfg.planner_sizes, work, clients[0].python, runner.env, say)
    extras: dict[str, str] = {}
    if section == "moto":
        say("measuring hashing throughput")
        extras.update(hashing_extras(work, cfg.hash_bytes))
    if server_rss is not None:
        extras["moto server RSS at the end"] = f"{server_rss:.0f} MiB"

    measured = report.Measured(summaries, scs, {c.key: c.label for c in clients}, cfg, startup, planner,
                               server.counts_requests, floor)
    targets = report.evaluate(measured, section)
    info = report.machine(clients, server.name)
    if args.scope:
        info["scope of this run"] = args.scope
    img = [] if args.no_docs else report.charts(args.img_dir, section, measured)
    links: dict[str, str] = {}
    if not args.no_docs and profiles:
        profile_dir.mkdir(parents=True, exist_ok=True)
        for old in profile_dir.glob("profile-*.txt"):
            old.unlink()
        for key, prof in profiles.items():
            dest = profile_dir / f"profile-{key}.txt"
            dest.write_text(prof.text)
            links[key] = dest.relative_to(args.docs.parent).as_posix()
    text = report.render(info, measured, clients, targets, extras, profiles, links, cfg.runs, img, args.docs.parent)
    payload = {
        "preset": args.preset,
        "server": server.name,
        "config": {k: (asdict(v) if isinstance(v, Dataset) else v) for k, v in vars(cfg).items()},
        "machine": info,
        "clients": [asdict(replace(c, python="", binary="")) for c in clients],
        "scenarios": [{"key": s.key, "title": s.title, "op": s.op, "kind": s.kind, "group": s.group,
                       "latency_ms": s.latency_ms} for s in scs],
        "runs": [asdict(r) for r in runner.results],
        "summaries": [asdict(s) for s in summaries],
        "targets": [asdict(t) for t in targets],
        "startup": startup,
        "planner": planner,
        "floor": floor,
        "profiles": {k: asdict(replace(v, text="")) for k, v in profiles.items()},
        "extras": extras,
        "notes": notes,
    }
    results_path.parent.mkdir(parents=True, exist_ok=True)
    results_path.write_text(json.dumps(payload, indent=1, ensure_ascii=False) + "\n")
    if not args.no_docs:
        report.write_page(args.docs, text, section, server.name)
        say(f"wrote {args.docs} and {', '.join(img) or 'no charts (matplotlib missing)'}")
    print(text)
    say(f"results in {results_path}; done")
    mine_bad = [s for s in summaries if s.client == "pos3" and s.status not in ("ok", "n/a")]
    return 1 if mine_bad else 0


if __name__ == "__main__":
    sys.exit(main())
