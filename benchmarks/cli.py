"""``python -m benchmarks``: pos3 against its peers on a local moto server; tables, charts, docs page.

Examples (from the repository root)::

    python -m benchmarks                       # the full run; updates docs/performance.md
    python -m benchmarks --preset quick        # a few minutes, one run each
    python -m benchmarks --preset smoke --no-install --work-dir /tmp/b --no-docs
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from benchmarks import config as config_mod
from benchmarks import report
from benchmarks.clients import PEERS, REPO, discover, snapshot_pos3
from benchmarks.datasets import Dataset, chunks, human_bytes
from benchmarks.scenarios import Runner, scenarios
from benchmarks.server import MotoProcess


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
    p.add_argument("--timeout", type=float, help="seconds before a client process is killed")
    p.add_argument("--work-dir", type=Path, default=REPO / "benchmarks" / ".work")
    p.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results" / "results.json")
    p.add_argument("--docs", type=Path, default=REPO / "docs" / "performance.md")
    p.add_argument("--img-dir", type=Path, default=REPO / "docs" / "img")
    p.add_argument("--no-docs", action="store_true", help="leave docs/ alone (results JSON and stdout only)")
    p.add_argument("--no-install", action="store_true", help="do not create peer venvs; use those already there")
    p.add_argument("--pos3-snapshot", metavar="GIT_REF",
                   help="benchmark pos3/ as committed at this ref (e.g. HEAD) instead of the work tree")
    p.add_argument("--no-profile", action="store_true", help="do not profile scenarios that miss a target")
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


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    cfg = config_mod.PRESETS[args.preset]
    large = tuple(int(x) for x in args.large.lower().split("x")) if args.large else None
    cfg = config_mod.with_overrides(cfg, runs=args.runs, huge_mib=args.huge_mib,
                                    large=(large[0], large[1]) if large and len(large) == 2 else None,
                                    tree_count=args.tree, timeout=args.timeout)
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
        clients[0].env = {"PYTHONPATH": str(folder)}
        clients[0].version += f" (git {sha}, committed snapshot)"
    for n in notes:
        say(n)
    for c in clients:
        say(f"client {c.label}: {c.version if c.available else c.reason}")
    scs = scenarios(cfg)
    if args.scenarios:
        chosen = {s.strip() for s in args.scenarios.split(",")}
        unknown = chosen - {s.key for s in scs}
        if unknown:
            raise SystemExit(f"unknown scenario(s) {sorted(unknown)}; choose from {[s.key for s in scs]}")
        scs = [s for s in scs if s.key in chosen]

    server = MotoProcess(log_path=str(work / "logs" / "moto.log")).start()
    say(f"moto server on {server.endpoint}")
    profiles: dict[str, str] = {}
    try:
        runner = Runner(cfg, work, server, clients, say)
        runner.prepare()
        for sc in scs:
            runner.run(sc)
        summaries = runner.summaries(clients, scs)
        labels = {c.key: c.label for c in clients}
        targets = report.evaluate(summaries, scs, labels)
        if not args.no_profile:
            for key in dict.fromkeys(t.scenario for t in targets if t.status == "not met" and t.scenario):
                sc = next(s for s in scs if s.key == key)
                say(f"profiling pos3 in {key} (a target is not met)")
                out = work / "logs" / f"profile-{key}.txt"
                text = runner.profile(sc, out)
                if text is None:
                    say("  pyinstrument is not installed; no profile")
                    continue
                profiles[key] = text
                results_dir = args.results.parent
                results_dir.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(out, results_dir / f"profile-{key}.txt")
        server_rss = server.rss_mib()
    finally:
        server.stop()

    extras: dict[str, str] = {}
    noop = next((s for s in summaries if s.scenario == "resync_noop" and s.client == "pos3"), None)
    if noop is not None and noop.status == "ok":
        reqs = ", ".join(f"{k} {v}" for k, v in sorted(noop.requests.items())) or "none"
        extras[f"no-op re-sync of {cfg.tree.count:,} objects (pos3)"] = (
            f"{noop.wall:.2f} s wall, {noop.cpu:.2f} s CPU, requests: {reqs}")
    say("measuring hashing throughput")
    extras.update(hashing_extras(work, cfg.hash_bytes))
    if server_rss is not None:
        extras["moto server RSS at the end"] = f"{server_rss:.0f} MiB"

    info = report.machine(clients)
    img = [] if args.no_docs else report.charts(args.img_dir, scs, clients, summaries)
    section = report.render(info, scs, clients, summaries, targets, extras, profiles, cfg.runs, img)
    payload = {
        "preset": args.preset,
        "config": {k: (asdict(v) if isinstance(v, Dataset) else v) for k, v in vars(cfg).items()},
        "machine": info,
        "clients": [asdict(replace(c, python="", binary="")) for c in clients],
        "scenarios": [{"key": s.key, "title": s.title, "op": s.op, "kind": s.kind} for s in scs],
        "runs": [asdict(r) for r in runner.results],
        "summaries": [asdict(s) for s in summaries],
        "targets": [asdict(t) for t in targets],
        "extras": extras,
        "notes": notes,
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(payload, indent=1, ensure_ascii=False) + "\n")
    if not args.no_docs:
        report.write_page(args.docs, section)
        say(f"wrote {args.docs} and {', '.join(img) or 'no charts (matplotlib missing)'}")
    print(section)
    say(f"results in {args.results}; done")
    mine_bad = [s for s in summaries if s.client == "pos3" and s.status not in ("ok", "n/a")]
    return 1 if mine_bad else 0


if __name__ == "__main__":
    sys.exit(main())
