"""Downloads through a faulty network: an exact mirror or a clear error, never a wrong file or a hang."""

from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Any

import anyio
import boto3
import pytest
from botocore.config import Config

import pos3
from tests.conftest import local_tree, put, require
from tests.faults.conftest import fault_mirror
from tests.faults.helpers import assert_download_invariant, failed_keys
from tests.faults.proxy import FaultProxy, Rule, make_rule

pytestmark = pytest.mark.anyio


def _files(seed: int) -> dict[str, bytes]:
    rng = random.Random(seed)
    files = {f"data/f{i:02d}.bin": rng.randbytes(rng.randrange(0, 40_000)) for i in range(12)}
    files["data/sub/medium.bin"] = rng.randbytes(200_000)
    files["data/sub/large.bin"] = rng.randbytes(900_000)  # ranged download: 256 KiB threshold
    return files


def _objects_get(path: str = "/data/") -> dict[str, Any]:
    return {"method": "GET", "path": path}


TRANSIENT: dict[str, Rule] = {
    # Each object GET meets the fault once (per key), then the network behaves.
    "reset-before-answer": make_rule("reset", times=1, per_path=True, **_objects_get()),
    "503-slowdown": make_rule("status", status=503, code="SlowDown", times=1, per_path=True, **_objects_get()),
    "500-internal": make_rule("status", status=500, code="InternalError", times=1, per_path=True, **_objects_get()),
    "truncated-body": make_rule("truncate", times=1, per_path=True, **_objects_get()),
    "latency": make_rule("latency", delay=0.01, **_objects_get()),
    "list-503": make_rule("status", status=503, code="SlowDown", times=2, method="GET", query="list-type"),
}


@pytest.mark.parametrize("scenario", sorted(TRANSIENT))
async def test_transient_fault_still_gives_exact_mirror(
    scenario: str, proxy: FaultProxy, s3: Any, bucket: str, cache_root: Path
) -> None:
    files = _files(1)
    put(s3, bucket, files)
    rule = proxy.scenario.add(TRANSIENT[scenario])
    async with fault_mirror(cache_root) as m:
        root = await m.download(f"s3://{bucket}/data")
    assert local_tree(root) == {k[5:]: v for k, v in files.items()}
    assert sum(rule.fired.values()) >= 1
    if scenario == "truncated-body":
        # pos3 resumed the broken bodies from the last good byte instead of starting over.
        assert any(e.range and not e.range.startswith("bytes=0-") for e in proxy.log if e.kind == "pass")


@pytest.mark.parametrize("seed", [11, 12, 13])
async def test_random_faults_exact_or_named_then_recovers(
    seed: int, proxy: FaultProxy, s3: Any, bucket: str, cache_root: Path
) -> None:
    files = _files(seed)
    put(s3, bucket, files)
    proxy.scenario.rng.seed(seed)
    for kind, extra in [("reset", {}), ("status", {"status": 503, "code": "SlowDown"}),
                        ("status", {"status": 500, "code": "InternalError"}), ("truncate", {}), ("flip", {})]:
        proxy.scenario.add(make_rule(kind, probability=0.08, **extra))  # type: ignore[arg-type]
    error: BaseException | None = None
    async with fault_mirror(cache_root, max_attempts=3) as m:
        root = m.engine and cache_root / "_" / bucket / "data"
        try:
            await m.download(f"s3://{bucket}/data")
        except pos3.Pos3Error as exc:
            error = exc
    assert_download_invariant(s3, bucket, "data/", root, error)
    # A healthy network: the next run makes an exact mirror.
    proxy.scenario.clear()
    async with fault_mirror(cache_root) as m:
        await m.download(f"s3://{bucket}/data")
    assert local_tree(root) == {k[5:]: v for k, v in files.items()}


@pytest.mark.parametrize(("length", "budget"), [(4, 60.0), (40, 60.0), (40, 0.2)])
async def test_blackout_window_then_recovery(
    length: int, budget: float, proxy: FaultProxy, s3: Any, bucket: str, cache_root: Path
) -> None:
    files = _files(3)
    put(s3, bucket, files)
    # Every connection is reset for the next ``length`` requests, then the server is back.
    rule = proxy.scenario.add(make_rule("reset", times=length))
    error: BaseException | None = None
    root = cache_root / "_" / bucket / "data"
    async with fault_mirror(cache_root, outage_budget=budget) as m:
        try:
            await m.download(f"s3://{bucket}/data")
        except pos3.Pos3Error as exc:
            error = exc
    if budget > 1:
        # Within the outage budget, the listing (like every request) rides the blackout out.
        assert error is None
        assert rule.fired[""] == length
        assert local_tree(root) == {k[5:]: v for k, v in files.items()}
    else:
        assert isinstance(error, pos3.EndpointError)  # the listing could not be read: nothing was done
        assert f"s3://{bucket}/data" in str(error)
    assert_download_invariant(s3, bucket, "data/", root, error)
    proxy.scenario.clear()  # the window ends
    async with fault_mirror(cache_root) as m:
        await m.download(f"s3://{bucket}/data")
    assert local_tree(root) == {k[5:]: v for k, v in files.items()}


async def test_stalled_server_fails_clearly_not_hangs(
    proxy: FaultProxy, s3: Any, bucket: str, cache_root: Path
) -> None:
    # A server that never answers: read_timeout ends each request, the outage budget the object.
    put(s3, bucket, {"data/a.bin": b"a" * 1000, "data/b.bin": b"b" * 1000})
    proxy.scenario.add(make_rule("stall", method="GET", path="/data/b.bin"))
    with anyio.fail_after(90):  # a hang would end here; the timeouts below end it much sooner
        async with fault_mirror(cache_root, read_timeout=1.0, max_attempts=2, outage_budget=2.0) as m:
            with pytest.raises(pos3.TransferError) as info:
                await m.download(f"s3://{bucket}/data")
    assert failed_keys(info.value) == {"data/b.bin"}
    assert "did not answer in time" in str(info.value)
    root = cache_root / "_" / bucket / "data"
    assert local_tree(root) == {"a.bin": b"a" * 1000}
    # botocore retried once (max_attempts=2), pos3 again until the 2 s budget was spent, then gave up
    assert 2 <= proxy.count("stall") <= 8


async def test_stalled_listing_fails_clearly(proxy: FaultProxy, s3: Any, bucket: str, cache_root: Path) -> None:
    put(s3, bucket, {"data/a.bin": b"a"})
    proxy.scenario.add(make_rule("stall", method="GET", query="list-type"))
    # A 2 s outage budget instead of the default 60 s: pos3 gives up after it all the same.
    with anyio.fail_after(90):
        async with fault_mirror(cache_root, read_timeout=1.0, max_attempts=2, outage_budget=2.0) as m:
            with pytest.raises(pos3.EndpointError, match=f"s3://{bucket}/data"):
                await m.download(f"s3://{bucket}/data")


@pytest.mark.parametrize("checksum", [None, "CRC32"])
@pytest.mark.parametrize("size", [50_000, 900_000], ids=["whole-object", "ranged-parts"])
async def test_flipped_byte_on_every_fetch_is_caught_and_not_placed(
    size: int, checksum: str | None, proxy: FaultProxy, server: Any, bucket: str, cache_root: Path
) -> None:
    if checksum:
        require(server, "stored_checksums")
    good = os.urandom(size)
    # Without an additional checksum, pos3's own check (MD5 of a single-part ETag) must catch it;
    # with one, botocore validates whole-object GETs too (never ranged ones: pos3 checks the file).
    plain = boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1",
                         config=Config(request_checksum_calculation="when_required"))
    extra = {"ChecksumAlgorithm": checksum} if checksum else {}
    plain.put_object(Bucket=bucket, Key="data/bad.bin", Body=good, **extra)
    plain.put_object(Bucket=bucket, Key="data/ok.bin", Body=b"fine")
    assert ("ChecksumCRC32" in plain.head_object(Bucket=bucket, Key="data/bad.bin", ChecksumMode="ENABLED")) \
        == bool(checksum)
    ranged = size >= 256 << 10
    # Every fetch is damaged: the repairs (fetched again, cut elsewhere) never get the right
    # bytes, and the object fails instead of being taken for one whose ETag is not an MD5.
    proxy.scenario.add(make_rule("flip", method="GET", path="/data/bad.bin", ranged=ranged or None))
    async with fault_mirror(cache_root, part_size=300_000) as m:
        with pytest.raises(pos3.TransferError) as info:
            await m.download(f"s3://{bucket}/data")
    assert isinstance(info.value.failures[0].error, pos3.IntegrityError)
    assert failed_keys(info.value) == {"data/bad.bin"}
    root = cache_root / "_" / bucket / "data"
    assert local_tree(root) == {"ok.bin": b"fine"}
    assert not list((cache_root / ".pos3" / "staging").rglob("*.part"))
    proxy.scenario.clear()
    async with fault_mirror(cache_root, part_size=300_000) as m:
        await m.download(f"s3://{bucket}/data")
    assert local_tree(root) == {"ok.bin": b"fine", "bad.bin": good}


async def test_flipped_byte_caught_by_pos3_fingerprint_and_repaired(
    proxy: FaultProxy, s3: Any, bucket: str, cache_root: Path, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    data = os.urandom(6 << 20)  # multipart upload: an ETag that is not an MD5; pos3-xxh3 metadata
    (src / "model.bin").write_bytes(data)
    async with fault_mirror(cache_root) as m:
        await m.upload(f"s3://{bucket}/data", src, interval=None)
    head = s3.head_object(Bucket=bucket, Key="data/model.bin")
    assert "-" in head["ETag"] and "pos3-xxh3" in head["Metadata"]
    flip = proxy.scenario.add(make_rule("flip", method="GET", path="/data/model.bin", ranged=True, times=1))
    async with fault_mirror(cache_root, part_size=1 << 20) as m:
        await m.download(f"s3://{bucket}/data", tmp_path / "dst")
    assert sum(flip.fired.values()) == 1
    assert (tmp_path / "dst" / "model.bin").read_bytes() == data
    # Six parts came, the check failed, then only parts that did not come identical twice were fetched
    # again: at most 6 + 6 + 1 ranged GETs, not a fresh download of everything each round.
    assert proxy.count(method="GET", path="/data/model.bin") <= 13


async def test_damage_on_every_fetch_of_a_fingerprinted_object_fails_bounded(
    proxy: FaultProxy, s3: Any, bucket: str, cache_root: Path, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "model.bin").write_bytes(os.urandom(6 << 20))
    async with fault_mirror(cache_root) as m:
        await m.upload(f"s3://{bucket}/data", src, interval=None)
    proxy.scenario.add(make_rule("flip", method="GET", path="/data/model.bin", ranged=True))
    async with fault_mirror(cache_root, part_size=2 << 20) as m:
        with pytest.raises(pos3.TransferError, match=re.escape("data/model.bin")) as info:
            await m.download(f"s3://{bucket}/data", tmp_path / "dst")
    assert isinstance(info.value.failures[0].error, pos3.IntegrityError)
    assert not (tmp_path / "dst" / "model.bin").exists()
    # Bounded: 1 + 4 repair rounds, each of at most 3 + 2 ranges (two whole refetches cut elsewhere).
    assert proxy.count(method="GET", path="/data/model.bin") <= 5 * 5


async def test_forbidden_key_does_not_stop_the_others(
    proxy: FaultProxy, s3: Any, bucket: str, cache_root: Path
) -> None:
    files = _files(4)
    put(s3, bucket, files)
    proxy.scenario.add(make_rule("status", status=403, code="AccessDenied", method="GET", path="/data/f03.bin"))
    root = cache_root / "_" / bucket / "data"
    async with fault_mirror(cache_root) as m:
        with pytest.raises(pos3.TransferError) as info:
            await m.download(f"s3://{bucket}/data")
    assert failed_keys(info.value) == {"data/f03.bin"}
    assert "access denied" in str(info.value)
    expected = {k[5:]: v for k, v in files.items()}
    assert local_tree(root) == {k: v for k, v in expected.items() if k != "f03.bin"}
    # The state recorded exactly what landed: the next run fetches only the missing object.
    proxy.scenario.clear()
    before = len(proxy.log)
    async with fault_mirror(cache_root) as m:
        await m.download(f"s3://{bucket}/data")
    assert local_tree(root) == expected
    fetched = {e.path for e in proxy.log[before:] if e.method == "GET" and not e.query}
    assert fetched == {f"/{bucket}/data/f03.bin"}


async def test_failed_listing_deletes_nothing_locally(
    proxy: FaultProxy, s3: Any, bucket: str, cache_root: Path
) -> None:
    files = _files(5)
    put(s3, bucket, files)
    async with fault_mirror(cache_root) as m:
        root = await m.download(f"s3://{bucket}/data")
    mirrored = local_tree(root)
    proxy.scenario.add(make_rule("status", status=503, code="SlowDown", method="GET", query="list-type"))
    # Throttling is retried for the outage budget: 2 s instead of the default 60 s, the same end.
    async with fault_mirror(cache_root, max_attempts=2, outage_budget=2.0) as m:
        with pytest.raises(pos3.S3Error, match=f"s3://{bucket}/data"):
            await m.download(f"s3://{bucket}/data")
    assert local_tree(root) == mirrored
