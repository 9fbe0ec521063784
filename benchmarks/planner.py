"""The pure planner at scale: a synthetic listing of N objects against a state store of N records.

Run as ``python -m benchmarks.planner N STORE_DIR OUT.json`` (the benchmark starts one process per
size, so each size's peak RSS is its own). No server and no local files: the listing, the local
tree and the records are made up, exactly in sync and each in the order the engine gets it, so
the plan is a no-op and every object takes the planner's most common path (a record, unchanged
stat, same ETag). The store is built once per size and reused by later runs
(``STORE_DIR/state-N.db``).

Stages, each timed in CPU seconds of this process:

* ``records``: `StateStore.load` of N records (one SELECT, N `Record`s);
* ``keys``: keys to relative paths and the collision check, as the engine does after a LIST;
* ``plan``: `plan_download` over the N-object listing, N local files and N records.

``setup`` (building the synthetic inputs, and the store on a first run) is reported but not part
of the total.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

PREFIX = "data/"


def _rel(i: int) -> str:
    return f"d{i % 1000:03d}/f{i:07d}.bin"


def run(n: int, store_dir: Path) -> dict[str, float]:
    from pos3._keys import find_collisions, key_paths, relative_path
    from pos3._plan import LocalFile, LocalTree, Record, RemoteFile, RemoteTree, plan_download
    from pos3._state import StateStore

    cpu: dict[str, float] = {}
    t0 = time.process_time()
    root = Path("/bench/synthetic/root")
    etag = "0" * 32
    # In the orders the engine gets them: S3 lists keys sorted, a scan reads one folder after
    # another (here in name order), the store yields records by path.
    by_dir = sorted(range(n), key=lambda i: (i % 1000, i))
    listing = [RemoteFile(PREFIX + _rel(i), 1024, etag, "2026-01-01T00:00:00+00:00") for i in by_dir]
    local = LocalTree({_rel(i): LocalFile(1024, 1_700_000_000_000_000_000 + i, 1000 + i) for i in by_dir},
                      frozenset(f"d{d:03d}" for d in range(min(n, 1000))))
    store_dir.mkdir(parents=True, exist_ok=True)
    db = store_dir / f"state-{n}.db"
    store = StateStore(db)
    if not (store_dir / f"state-{n}.done").exists():
        batch: list[tuple[str, Record]] = []
        for i in range(n):
            rel = _rel(i)
            batch.append((rel, Record(PREFIX + rel, etag, 1024, 1024, 1_700_000_000_000_000_000 + i, 1000 + i,
                                      "f" * 32, "2026-01-01T00:00:00+00:00",
                                      recorded_ns=1_800_000_000_000_000_000)))  # taken long after: not racy
            if len(batch) == 50_000:
                store.write(root, batch)
                batch = []
        store.write(root, batch)
        (store_dir / f"state-{n}.done").write_text("ok")
    cpu["setup"] = time.process_time() - t0

    t0 = time.process_time()
    records = store.load(root)
    cpu["records"] = time.process_time() - t0
    assert len(records) == n, (len(records), n)

    t0 = time.process_time()
    files: dict[str, RemoteFile] = {}
    for f in listing:  # as `pos3._gather.gather` does (which also catches UnsafeKeyError)
        files[relative_path(f.key, PREFIX)] = f
    collisions = find_collisions(key_paths(listing, files, set(), PREFIX))
    cpu["keys"] = time.process_time() - t0
    assert not collisions

    t0 = time.process_time()
    plan = plan_download(PREFIX, RemoteTree(files), local, records, delete=True)
    cpu["plan"] = time.process_time() - t0
    assert plan.final and not plan.copies and not plan.deletes, "the synthetic tree must be a no-op"
    store.close()
    cpu["total"] = cpu["records"] + cpu["keys"] + cpu["plan"]
    cpu["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return cpu


def main(argv: list[str]) -> int:
    n, store_dir, out = int(argv[0]), Path(argv[1]), Path(argv[2])
    wall = time.perf_counter()
    result = run(n, store_dir)
    result["wall"] = time.perf_counter() - wall
    out.write_text(json.dumps({"objects": n, **result}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
