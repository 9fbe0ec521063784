"""Outages outside GET and PUT bodies end exact too: the listing, deletes, commits, lost answers.

Every request pos3 makes rides out connection failures under the same outage budget (issue 13):
ListObjectsV2 pages, HEAD, DeleteObjects, the conditional commit PUT of an atomic publish and
the GET that reads the commit back. A request whose answer is lost after the server acted
(``drop``) is sent again and must not be mistaken for a failure or a conflict: a Complete that
finds NoSuchUpload, a conditional commit that finds 412. Through both facades; each scenario
asserts the exact end state and a wall time of at most the healthy time plus the outage plus
slack.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SyncFacade, local_tree, put, remote_tree
from tests.faults.conftest import fault_mirror
from tests.faults.helpers import record_timing
from tests.faults.proxy import FaultProxy, make_rule

pytestmark = [pytest.mark.anyio, pytest.mark.slow]  # outages: seconds of waiting each

MiB = 1 << 20
# Longer than botocore's own attempts can ride out: the mirrors here make 2 (one backoff, at most
# 1 s), so a 4 s outage is pos3's to ride out, as a 10 s one is with botocore's default 5 attempts.
MAX_ATTEMPTS = 2
OUTAGE = 4.0
SLACK = 15.0  # botocore's own backoff inside one request, pos3's, and a shared machine (as in test_finish_exact)

Opener = Callable[..., Any]


@pytest.fixture(params=["mirror", "amirror"])
def opener(request: pytest.FixtureRequest, cache_root: Path) -> Opener:
    kind = request.param

    def open_(**kwargs: Any) -> Any:
        kwargs.setdefault("show_progress", False)
        kwargs.setdefault("connect_timeout", 5.0)
        kwargs.setdefault("read_timeout", 5.0)
        kwargs.setdefault("max_workers", 4)
        kwargs.setdefault("max_attempts", MAX_ATTEMPTS)
        if kind == "mirror":
            return SyncFacade(cache_root=cache_root, **kwargs)
        return fault_mirror(cache_root, **kwargs)

    open_.kind = kind  # type: ignore[attr-defined]
    return open_


def _write(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)


def _tree(seed: int, n: int = 6) -> dict[str, bytes]:
    rng = random.Random(seed)
    return {f"d{i % 2}/f{i}.bin": rng.randbytes(rng.randrange(1_000, 30_000)) for i in range(n)}


def _resets(proxy: FaultProxy, method: str, query: str) -> int:
    return sum(1 for e in proxy.log if e.kind == "reset" and e.method == method and query in e.query)


async def test_an_outage_during_the_listing_is_ridden_out(
    opener: Opener, proxy: FaultProxy, s3: Any, bucket: str, tmp_path: Path
) -> None:
    files = _tree(1)
    put(s3, bucket, {f"data/{k}": v for k, v in files.items()})
    t0 = time.monotonic()
    async with opener() as m:
        await m.download(f"s3://{bucket}/data", tmp_path / "healthy")
    healthy = time.monotonic() - t0
    proxy.outage(OUTAGE, when=make_rule("pass", method="GET", query="list-type"))  # opens at the first LIST
    t0 = time.monotonic()
    async with opener() as m:
        await m.download(f"s3://{bucket}/data", tmp_path / "dst")
    faulty = time.monotonic() - t0
    record_timing("every connection reset for 4 s from the first LIST", opener.kind, healthy, faulty)  # type: ignore[attr-defined]
    assert len(proxy.outages) == 1
    assert _resets(proxy, "GET", "list-type") >= 1
    assert local_tree(tmp_path / "dst") == files
    assert faulty <= healthy + OUTAGE + SLACK, (healthy, faulty)


async def test_an_outage_during_deletes_is_ridden_out(
    opener: Opener, proxy: FaultProxy, s3: Any, bucket: str, tmp_path: Path
) -> None:
    files = _tree(2, 10)
    src = tmp_path / "src"
    _write(src, files)
    async with opener() as m:
        await m.upload(f"s3://{bucket}/out", src, interval=None)
    gone = sorted(files)[::3]
    for rel in gone:
        (src / rel).unlink()
    keep = {k: v for k, v in files.items() if k not in gone}
    proxy.outage(OUTAGE, when=make_rule("pass", method="POST", query="delete"))  # opens at the first DeleteObjects
    t0 = time.monotonic()
    async with opener() as m:
        await m.upload(f"s3://{bucket}/out", src, interval=None)
    faulty = time.monotonic() - t0
    record_timing("every connection reset for 4 s from the first DeleteObjects", opener.kind, 0.0, faulty)  # type: ignore[attr-defined]
    assert len(proxy.outages) == 1
    assert _resets(proxy, "POST", "delete") >= 1
    assert remote_tree(s3, bucket, "out/") == {f"out/{k}": v for k, v in keep.items()}
    assert faulty <= OUTAGE + SLACK, faulty
    # Recorded exactly: a healthy rerun sends and deletes nothing.
    proxy.outage(0)
    before = len(proxy.log)
    async with opener() as m:
        await m.upload(f"s3://{bucket}/out", src, interval=None)
    assert [e for e in proxy.log[before:] if e.method in ("PUT", "POST", "DELETE")] == []


def _commits(s3: Any, bucket: str, prefix: str) -> list[str]:
    return sorted(k.rsplit("/", 1)[1] for k in remote_tree(s3, bucket, f"{prefix}.pos3/commits/"))


def _objects(s3: Any, bucket: str, prefix: str) -> set[str]:
    return {k.rsplit("/", 1)[1] for k in remote_tree(s3, bucket, f"{prefix}.pos3/objects/")}


def _referenced(s3: Any, bucket: str, prefix: str) -> set[str]:
    out: set[str] = set()
    for body in remote_tree(s3, bucket, f"{prefix}.pos3/commits/").values():
        out |= {v["xxh3"] for v in json.loads(body)["files"].values()}
    return out


async def _read_back(opener: Opener, bucket: str, dst: Path) -> dict[str, bytes]:
    async with opener() as m:
        await m.download(f"s3://{bucket}/snap", dst)
    return local_tree(dst)


async def test_outages_at_the_commit_and_at_garbage_collection_of_an_atomic_publish_end_exact(
    opener: Opener, proxy: FaultProxy, s3: Any, bucket: str, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    v1 = _tree(3)
    _write(src, v1)
    t0 = time.monotonic()
    async with opener() as m:
        await m.upload(f"s3://{bucket}/snap", src, interval=None, atomic=True)
    healthy = time.monotonic() - t0
    # v2: the outage opens at the conditional commit PUT (If-None-Match), after the objects went up.
    v2 = dict(v1) | {"d0/f0.bin": b"two" * 1000, "new.bin": b"n" * 5000}
    _write(src, v2)
    proxy.outage(OUTAGE, when=make_rule("pass", method="PUT", header="^if-none-match: "))
    t0 = time.monotonic()
    async with opener() as m:
        await m.upload(f"s3://{bucket}/snap", src, interval=None, atomic=True)
    faulty = time.monotonic() - t0
    record_timing("every connection reset for 4 s from the commit PUT of an atomic publish", opener.kind,  # type: ignore[attr-defined]
            healthy, faulty)
    assert len(proxy.outages) == 1
    assert _resets(proxy, "PUT", "") >= 1
    assert _commits(s3, bucket, "snap/") == ["000000000001.json", "000000000002.json"]  # one commit, not two
    assert faulty <= healthy + OUTAGE + SLACK, (healthy, faulty)
    assert await _read_back(opener, bucket, tmp_path / "r2") == v2
    # v3: the outage opens at the garbage collection's DeleteObjects (commit 1 and its objects go).
    v3 = dict(v2) | {"d1/f1.bin": b"three" * 999}
    _write(src, v3)
    proxy.outage(OUTAGE, when=make_rule("pass", method="POST", query="delete"))
    t0 = time.monotonic()
    async with opener() as m:
        await m.upload(f"s3://{bucket}/snap", src, interval=None, atomic=True)
    faulty = time.monotonic() - t0
    record_timing("every connection reset for 4 s from the DeleteObjects of snapshot GC", opener.kind,  # type: ignore[attr-defined]
            healthy, faulty)
    assert len(proxy.outages) == 2
    assert _resets(proxy, "POST", "delete") >= 1
    assert _commits(s3, bucket, "snap/") == ["000000000002.json", "000000000003.json"]
    assert _objects(s3, bucket, "snap/") == _referenced(s3, bucket, "snap/")  # garbage gone, nothing more
    assert faulty <= healthy + OUTAGE + SLACK, (healthy, faulty)
    assert await _read_back(opener, bucket, tmp_path / "r3") == v3


async def test_lost_answers_of_a_commit_and_of_a_multipart_complete_are_not_failures(
    opener: Opener, proxy: FaultProxy, s3: Any, bucket: str, tmp_path: Path
) -> None:
    # The server acts, the answer never comes back; the request is sent again and finds its own
    # work done: 412 for the conditional commit, NoSuchUpload for the Complete.
    src = tmp_path / "src"
    files = _tree(4) | {"big.bin": random.Random(5).randbytes(9 * MiB)}  # multipart in both facades
    _write(src, files)
    commit = proxy.scenario.add(make_rule("drop", method="PUT", header="^if-none-match: ", times=1))
    complete = proxy.scenario.add(make_rule("drop", method="POST", query="uploadId", times=1))
    async with opener() as m:
        await m.upload(f"s3://{bucket}/snap", src, interval=None, atomic=True)
    assert commit.fired[""] == 1
    assert complete.fired[""] == 1
    assert _commits(s3, bucket, "snap/") == ["000000000001.json"]  # neither lost nor duplicated
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    proxy.scenario.clear()
    assert await _read_back(opener, bucket, tmp_path / "r") == files
    # The state knows it is published: a rerun sends nothing.
    before = len(proxy.log)
    async with opener() as m:
        await m.upload(f"s3://{bucket}/snap", src, interval=None, atomic=True)
    assert [e for e in proxy.log[before:] if e.method in ("PUT", "POST")] == []

