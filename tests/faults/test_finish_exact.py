"""Faults a real network produces end exact, not merely reported (issue 13: one test per row).

Each scenario runs the same small tree healthy first (its wall time is the baseline), then
through the fault, and asserts: a byte-identical tree or bucket, state recorded exactly for
what landed (a healthy rerun transfers nothing), and a wall time of at most the healthy time
plus the outage plus one stall timeout per stall, plus a fixed slack for backoff on a loaded
machine. Through both facades; ``amirror-ranged`` uses small thresholds so that the same files
go through ranged GETs and multipart uploads.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import pos3
from tests.conftest import SyncFacade, local_tree, put, remote_tree
from tests.faults.conftest import fault_mirror
from tests.faults.helpers import record_timing
from tests.faults.proxy import FaultProxy, make_rule

pytestmark = [pytest.mark.anyio, pytest.mark.slow]  # outages and stalls: seconds of waiting each

MiB = 1 << 20
# Backoff on top of the healthy time: botocore's own backoff inside one request (up to 8 s at its
# 4th retry) can delay the first attempt after the endpoint is back, then pos3's (at most 5 s);
# and the machine running the tests is shared by many processes.
SLACK = 15.0
STALL = 2.0  # the stall timeout of these tests: low, and still the rule (a silence aborts and resumes)


def _tree(seed: int) -> dict[str, bytes]:
    rng = random.Random(seed)
    files = {"big-1.bin": rng.randbytes(MiB + 17), "big-2.bin": rng.randbytes(2 * MiB),
             "big-3.bin": rng.randbytes(3 * MiB - 5)}
    files |= {f"small/s{i}.txt": rng.randbytes(rng.randrange(2_000, 20_000)) for i in range(6)}
    return files


Opener = Callable[..., Any]


@pytest.fixture(params=["mirror", "amirror", "amirror-ranged"])
def opener(request: pytest.FixtureRequest, cache_root: Path) -> Opener:
    """Opens a mirror through one facade, with the fault tests' short timeouts."""
    kind = request.param

    def open_(*, ranged_part: int | None = MiB, **kwargs: Any) -> Any:
        kwargs.setdefault("show_progress", False)
        kwargs.setdefault("connect_timeout", 5.0)
        kwargs.setdefault("read_timeout", 5.0)
        kwargs.setdefault("max_workers", 4)
        if kind == "mirror":
            return SyncFacade(cache_root=cache_root, **kwargs)
        if kind == "amirror":
            return pos3.amirror(cache_root=cache_root, **kwargs)
        return fault_mirror(cache_root, part_size=ranged_part, **kwargs)

    open_.kind = kind  # type: ignore[attr-defined]
    return open_


async def _download_scenario(name: str, opener: Opener, proxy: FaultProxy, s3: Any, bucket: str, tmp_path: Path,
                             arm: Callable[[], None], extra: float, **kwargs: Any) -> None:
    files = _tree(1)
    put(s3, bucket, {f"data/{k}": v for k, v in files.items()})
    t0 = time.monotonic()
    async with opener(**kwargs) as m:
        await m.download(f"s3://{bucket}/data", tmp_path / "healthy")
    healthy = time.monotonic() - t0
    arm()
    t0 = time.monotonic()
    async with opener(**kwargs) as m:
        await m.download(f"s3://{bucket}/data", tmp_path / "dst")
    faulty = time.monotonic() - t0
    record_timing(name, opener.kind, healthy, faulty)  # type: ignore[attr-defined]
    assert local_tree(tmp_path / "dst") == files
    assert faulty <= healthy + extra + SLACK, (healthy, faulty)
    # The state recorded exactly what landed: a healthy rerun fetches nothing.
    proxy.scenario.clear()
    proxy.outage(0)
    before = len(proxy.log)
    async with opener(**kwargs) as m:
        await m.download(f"s3://{bucket}/data", tmp_path / "dst")
    assert [e for e in proxy.log[before:] if e.method == "GET" and not e.query] == []
    assert local_tree(tmp_path / "dst") == files


async def test_bodies_cut_at_half_with_a_fin_end_exact(
    opener: Opener, proxy: FaultProxy, s3: Any, bucket: str, tmp_path: Path
) -> None:
    proxy.scenario.rng.seed(30)
    rule = make_rule("cut", probability=0.3, method="GET", path="/data/")

    def arm() -> None:
        proxy.scenario.add(rule)

    await _download_scenario("30% of GETs cut at half (FIN)", opener, proxy, s3, bucket, tmp_path, arm, 0.0)
    assert sum(rule.fired.values()) >= 1


async def test_bodies_that_stall_after_half_are_resumed_within_the_stall_timeout(
    opener: Opener, proxy: FaultProxy, s3: Any, bucket: str, tmp_path: Path
) -> None:
    # The first GET of each >= 1 MiB body sends half, then silence (the connection stays open).
    rule = make_rule("stall_half", times=1, per_path=True, method="GET", path="/data/big-")

    def arm() -> None:
        proxy.scenario.add(rule)

    await _download_scenario("first GET of each >= 1 MiB body stalls after half", opener, proxy, s3, bucket,
                             tmp_path, arm, 3 * STALL, stall_timeout=STALL)
    assert sum(rule.fired.values()) == 3


async def test_flipped_bytes_are_caught_and_fetched_again(
    opener: Opener, proxy: FaultProxy, s3: Any, bucket: str, tmp_path: Path
) -> None:
    proxy.scenario.rng.seed(22)
    rule = make_rule("flip", probability=0.2, method="GET", path="/data/")

    def arm() -> None:
        proxy.scenario.add(rule)

    await _download_scenario("20% of object GETs have one byte flipped", opener, proxy, s3, bucket, tmp_path, arm,
                             0.0)
    assert sum(rule.fired.values()) >= 1


async def test_an_outage_in_the_middle_of_a_download_is_ridden_out(
    opener: Opener, proxy: FaultProxy, s3: Any, bucket: str, tmp_path: Path
) -> None:
    def arm() -> None:
        proxy.outage(4.0, after_bytes=proxy.body_bytes + 3 * MiB)  # every connection reset for 4 s

    await _download_scenario("every connection reset for 4 s mid-download", opener, proxy, s3, bucket, tmp_path,
                             arm, 4.0)
    assert len(proxy.outages) == 1


async def test_a_slowdown_burst_pauses_the_whole_mirror_and_ends_exact(
    opener: Opener, proxy: FaultProxy, s3: Any, bucket: str, tmp_path: Path
) -> None:
    def arm() -> None:
        proxy.outage(3.0, after_bytes=proxy.body_bytes + 2 * MiB, kind="slowdown")  # every request 503 for 3 s

    await _download_scenario("503 SlowDown for every request for 3 s", opener, proxy, s3, bucket, tmp_path, arm,
                             3.0 + 20.0)
    slowed = proxy.count("slowdown")
    assert slowed >= 1
    # Not hammered: at most a few attempts per worker while throttled (4 workers, 5 botocore attempts each,
    # then the shared pause), not a tight loop.
    assert slowed <= 4 * 5 * 3, slowed


async def test_an_outage_in_the_middle_of_an_upload_is_ridden_out(
    opener: Opener, proxy: FaultProxy, s3: Any, bucket: str, tmp_path: Path
) -> None:
    files = _tree(2)
    if opener.kind == "amirror-ranged":  # type: ignore[attr-defined]
        files["big-6.bin"] = random.Random(3).randbytes(6 * MiB)  # multipart: two parts
    src = tmp_path / "src"
    for rel, data in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    t0 = time.monotonic()
    async with opener(ranged_part=None) as m:
        await m.upload(f"s3://{bucket}/healthy", src, interval=None)
    healthy = time.monotonic() - t0
    proxy.outage(4.0, after_bytes=proxy.request_bytes + proxy.body_bytes + 2 * MiB)
    t0 = time.monotonic()
    async with opener(ranged_part=None) as m:
        await m.upload(f"s3://{bucket}/out", src, interval=None)
    faulty = time.monotonic() - t0
    record_timing("every connection reset for 4 s mid-upload", opener.kind, healthy, faulty)  # type: ignore[attr-defined]
    assert len(proxy.outages) == 1
    assert remote_tree(s3, bucket, "out/") == {f"out/{k}": v for k, v in files.items()}
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert faulty <= healthy + 4.0 + SLACK, (healthy, faulty)
    proxy.outage(0)
    before = len(proxy.log)
    async with opener(ranged_part=None) as m:
        await m.upload(f"s3://{bucket}/out", src, interval=None)
    assert [e for e in proxy.log[before:] if e.method in ("PUT", "POST")] == []  # recorded: nothing to send


async def test_an_outage_longer_than_the_budget_fails_clearly_and_records_only_what_landed(
    opener: Opener, proxy: FaultProxy, s3: Any, bucket: str, tmp_path: Path
) -> None:
    files = _tree(4)
    put(s3, bucket, {f"data/{k}": v for k, v in files.items()})
    proxy.outage(3600.0, after_bytes=MiB)
    t0 = time.monotonic()
    async with opener(outage_budget=2.0, max_attempts=2) as m:
        with pytest.raises(pos3.TransferError) as info:
            await m.download(f"s3://{bucket}/data", tmp_path / "dst")
    assert time.monotonic() - t0 < 60  # the budget (2 s) plus botocore's attempts, never a hang
    named = {t.split("/", 3)[3] for t, _ in info.value.failures}
    landed = local_tree(tmp_path / "dst") if (tmp_path / "dst").exists() else {}
    assert all(files[rel] == data for rel, data in landed.items())
    assert {f"data/{rel}" for rel in files if rel not in landed} <= named
    assert all(isinstance(e, pos3.EndpointError) for _, e in info.value.failures)
    proxy.outage(0)
    before = len(proxy.log)
    async with opener() as m:
        await m.download(f"s3://{bucket}/data", tmp_path / "dst")
    assert local_tree(tmp_path / "dst") == files
    fetched = {e.path.split("/data/", 1)[1] for e in proxy.log[before:] if e.method == "GET" and not e.query}
    assert fetched == {rel for rel in files if rel not in landed}  # only what had not landed
