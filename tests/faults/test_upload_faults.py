"""Uploads through a faulty network: every object equals its local file, or a clear error."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import anyio
import pytest

import pos3
from tests.conftest import put, put_many, remote_tree, wait_for
from tests.faults.conftest import fault_mirror
from tests.faults.helpers import assert_upload_invariant, failed_keys
from tests.faults.proxy import FaultProxy, Rule, make_rule

pytestmark = pytest.mark.anyio


def _write_tree(root: Path, seed: int, big: bool = True) -> dict[str, bytes]:
    rng = random.Random(seed)
    files = {f"f{i:02d}.bin": rng.randbytes(rng.randrange(0, 30_000)) for i in range(10)}
    files["sub/medium.bin"] = rng.randbytes(300_000)
    if big:
        files["sub/big.bin"] = rng.randbytes((5 << 20) + 123_457)  # multipart: two parts of >= 5 MiB rules
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


def _append(path: Path, data: bytes) -> None:
    with open(path, "ab") as fh:
        fh.write(data)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # a new mtime even on a coarse clock


async def _upload(cache_root: Path, url: str, src: Path, **kwargs: Any) -> BaseException | None:
    try:
        async with fault_mirror(cache_root, **kwargs) as m:
            await m.upload(url, src, interval=None)
    except pos3.Pos3Error as exc:
        return exc
    return None


TRANSIENT: dict[str, Rule] = {
    "put-reset": make_rule("reset", method="PUT", times=1, per_path=True),
    "put-503": make_rule("status", status=503, code="SlowDown", method="PUT", times=1, per_path=True),
    "put-answer-lost": make_rule("drop", method="PUT", times=1, per_path=True),
    "part-500": make_rule("status", status=500, code="InternalError", method="PUT", query="partNumber", times=1),
    "create-multipart-503": make_rule("status", status=503, code="SlowDown", method="POST", query="uploads",
                                      times=1),
    "complete-503": make_rule("status", status=503, code="SlowDown", method="POST", query="uploadId", times=1),
    "latency": make_rule("latency", delay=0.01),
}


@pytest.mark.parametrize("scenario", sorted(TRANSIENT))
async def test_transient_fault_still_gives_exact_objects(
    scenario: str, proxy: FaultProxy, s3: Any, bucket: str, cache_root: Path, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    files = _write_tree(src, 1)
    rule = proxy.scenario.add(TRANSIENT[scenario])
    error = await _upload(cache_root, f"s3://{bucket}/out", src)
    assert error is None
    assert sum(rule.fired.values()) >= 1
    assert remote_tree(s3, bucket, "out/") == {f"out/{k}": v for k, v in files.items()}
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


async def test_lost_complete_answer_is_exact_or_named(
    proxy: FaultProxy, s3: Any, bucket: str, cache_root: Path, tmp_path: Path
) -> None:
    # The server completed the multipart upload but the answer never came back: a retried
    # Complete meets NoSuchUpload. The object is right or the key is named; the next sync settles it.
    src = tmp_path / "src"
    files = _write_tree(src, 2)
    proxy.scenario.add(make_rule("drop", method="POST", query="uploadId", times=1))
    error = await _upload(cache_root, f"s3://{bucket}/out", src)
    assert_upload_invariant(s3, bucket, "out/", files, error)
    proxy.scenario.clear()
    assert await _upload(cache_root, f"s3://{bucket}/out", src) is None
    assert remote_tree(s3, bucket, "out/") == {f"out/{k}": v for k, v in files.items()}


async def test_create_answers_lost_past_the_client_retries_leave_no_open_upload(
    proxy: FaultProxy, s3: Any, bucket: str, cache_root: Path, tmp_path: Path
) -> None:
    # The server creates the multipart upload each time, but the answers are lost until botocore's
    # own attempts are spent (2 here); pos3's outer retry then creates a third upload that works.
    # The two uploads nobody heard of would be billed forever if nothing aborted them.
    src = tmp_path / "src"
    files = _write_tree(src, 5)
    rule = proxy.scenario.add(make_rule("drop", method="POST", query="uploads", times=2))
    assert await _upload(cache_root, f"s3://{bucket}/out", src, max_attempts=2) is None
    assert sum(rule.fired.values()) == 2
    assert proxy.count(method="POST") >= 4  # three creates and one complete reached the server
    assert remote_tree(s3, bucket, "out/") == {f"out/{k}": v for k, v in files.items()}
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


@pytest.mark.parametrize("seed", [21, 22, 23])
async def test_random_faults_exact_or_named_then_recovers(
    seed: int, proxy: FaultProxy, s3: Any, bucket: str, cache_root: Path, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    files = _write_tree(src, seed)
    proxy.scenario.rng.seed(seed)
    for kind, extra in [("reset", {}), ("drop", {}), ("status", {"status": 503, "code": "SlowDown"}),
                        ("status", {"status": 500, "code": "InternalError"})]:
        proxy.scenario.add(make_rule(kind, probability=0.08, **extra))  # type: ignore[arg-type]
    error = await _upload(cache_root, f"s3://{bucket}/out", src, max_attempts=3)
    assert_upload_invariant(s3, bucket, "out/", files, error)
    proxy.scenario.clear()
    assert await _upload(cache_root, f"s3://{bucket}/out", src) is None
    assert remote_tree(s3, bucket, "out/") == {f"out/{k}": v for k, v in files.items()}
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


async def test_failed_part_aborts_the_multipart_upload(
    proxy: FaultProxy, s3: Any, bucket: str, cache_root: Path, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    files = _write_tree(src, 3)
    proxy.scenario.add(make_rule("status", status=403, code="AccessDenied", method="PUT", query="partNumber=2"))
    error = await _upload(cache_root, f"s3://{bucket}/out", src)
    assert isinstance(error, pos3.TransferError)
    assert failed_keys(error) == {"out/sub/big.bin"}
    assert_upload_invariant(s3, bucket, "out/", files, error)
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []  # no hidden storage left


async def test_one_forbidden_key_others_land_and_nothing_is_deleted(
    proxy: FaultProxy, server: Any, s3: Any, bucket: str, cache_root: Path, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    files = _write_tree(src, 4, big=False)
    put(s3, bucket, {"out/stale-1": b"old", "out/stale-2": b"old"})
    proxy.scenario.add(make_rule("status", status=403, code="AccessDenied", method="PUT", path="/out/f03.bin"))
    error = await _upload(cache_root, f"s3://{bucket}/out", src)
    assert isinstance(error, pos3.TransferError)
    assert failed_keys(error) == {"out/f03.bin"}
    remote = remote_tree(s3, bucket, "out/")
    assert remote == {f"out/{k}": v for k, v in files.items() if k != "f03.bin"} | {
        "out/stale-1": b"old", "out/stale-2": b"old"}
    assert server.log.count("POST", query_contains="delete") == 0  # deletes only after every upload succeeded
    # Healthy again: only the missing object is sent, then the stale ones are deleted in one batch.
    proxy.scenario.clear()
    before = len(proxy.log)
    assert await _upload(cache_root, f"s3://{bucket}/out", src) is None
    assert remote_tree(s3, bucket, "out/") == {f"out/{k}": v for k, v in files.items()}
    assert {e.path for e in proxy.log[before:] if e.method == "PUT"} == {f"/{bucket}/out/f03.bin"}
    assert server.log.count("POST", query_contains="delete") == 1


async def test_failed_listing_uploads_and_deletes_nothing(
    proxy: FaultProxy, server: Any, s3: Any, bucket: str, cache_root: Path, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    _write_tree(src, 5, big=False)
    put(s3, bucket, {"out/stale": b"old"})
    server.log.clear()
    proxy.scenario.add(make_rule("status", status=503, code="SlowDown", method="GET", query="list-type"))
    # Throttling is retried for the outage budget: 2 s instead of the default 60 s, the same end.
    error = await _upload(cache_root, f"s3://{bucket}/out", src, max_attempts=2, outage_budget=2.0)
    assert isinstance(error, pos3.TransferError)
    assert f"s3://{bucket}/out" in str(error)
    assert remote_tree(s3, bucket, "out/") == {"out/stale": b"old"}
    assert server.log.count("POST", query_contains="delete") == 0
    assert server.log.count("PUT") == 0


async def test_remote_deletes_are_batched_by_1000(
    proxy: FaultProxy, server: Any, s3: Any, bucket: str, cache_root: Path, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "keep.txt").write_bytes(b"keep")
    stale = {f"out/stale/{i:04d}": b"" for i in range(1001)}
    put_many(server, s3, bucket, stale)
    server.log.clear()
    assert await _upload(cache_root, f"s3://{bucket}/out", src) is None
    assert remote_tree(s3, bucket, "out/") == {"out/keep.txt": b"keep"}
    assert server.log.count("POST", query_contains="delete") == 2
    assert server.log.count("DELETE") == 0


async def test_file_written_during_upload_is_not_recorded_as_synced(
    proxy: FaultProxy, server: Any, s3: Any, bucket: str, cache_root: Path, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    live = src / "log.txt"
    live.write_bytes(b"first line\n")
    proxy.scenario.add(make_rule("hold", method="PUT", path="/out/log.txt", times=1))
    server.log.clear()

    async def write_more() -> None:
        # The PUT reached the server with the old bytes; the file grows before the answer arrives.
        await wait_for(lambda: server.log.count("PUT") >= 1)
        await anyio.to_thread.run_sync(_append, live, b"second line\n")
        proxy.gate.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(write_more)
        assert await _upload(cache_root, f"s3://{bucket}/out", src) is None
    assert remote_tree(s3, bucket, "out/") == {"out/log.txt": b"first line\n"}
    # It was not recorded in sync: the next sync sends the whole file.
    assert await _upload(cache_root, f"s3://{bucket}/out", src) is None
    assert remote_tree(s3, bucket, "out/") == {"out/log.txt": b"first line\nsecond line\n"}


async def test_cancelled_while_the_server_creates_a_multipart_upload_still_aborts_it(
    proxy: FaultProxy, s3: Any, bucket: str, cache_root: Path, tmp_path: Path
) -> None:
    """The cancellation lands while CreateMultipartUpload's answer is on the way: the upload it
    made is still aborted, nothing is left open on the server and no journal entry stays behind."""
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "big.bin").write_bytes(os.urandom((5 << 20) + 1))  # multipart: two parts
    proxy.scenario.add(make_rule("hold", method="POST", query="uploads", times=1))  # the answer waits

    def open_uploads() -> list[Any]:
        return list(s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []))

    async def cancel_once_created(scope: anyio.CancelScope) -> None:
        await wait_for(lambda: bool(open_uploads()))  # the server made it; its id is held in the proxy
        scope.cancel()  # the upload's task is cancelled now, while it waits for the id...
        proxy.gate.set()  # ...which then arrives, and the cancellation with it

    with anyio.CancelScope() as scope:
        async with fault_mirror(cache_root) as m, anyio.create_task_group() as tg:
            await m.upload(f"s3://{bucket}/out", src, interval=None)
            tg.start_soon(cancel_once_created, scope)
            await m.flush()
    assert scope.cancelled_caught
    assert open_uploads() == []
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)
    assert list((cache_root / ".pos3" / "multipart").glob("*.json")) == []

@pytest.mark.parametrize("checksum", ["when_supported", "when_required"])
@pytest.mark.parametrize("path", ["/out/f02.bin", "/out/sub/big.bin"], ids=["put", "part"])
async def test_flipped_request_byte_never_lands(
    checksum: str, path: str, proxy: FaultProxy, s3: Any, bucket: str, cache_root: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_REQUEST_CHECKSUM_CALCULATION", checksum)
    src = tmp_path / "src"
    files = _write_tree(src, 6)
    proxy.scenario.add(make_rule("flip_request", method="PUT", path=path, times=1))
    error = await _upload(cache_root, f"s3://{bucket}/out", src)
    assert_upload_invariant(s3, bucket, "out/", files, error)
    proxy.scenario.clear()
    assert await _upload(cache_root, f"s3://{bucket}/out", src) is None
    assert remote_tree(s3, bucket, "out/") == {f"out/{k}": v for k, v in files.items()}


@pytest.mark.parametrize(("atomic", "size"), [(False, 7), (False, (5 << 20) + 1), (True, 7)],
                         ids=["put", "multipart", "publish"])
async def test_periodic_upload_never_sends_a_file_written_after_its_settle_check(
    proxy: FaultProxy, s3: Any, bucket: str, cache_root: Path, tmp_path: Path, atomic: bool, size: int
) -> None:
    # The file is long at rest when a periodic sync scans it, and is appended to while the sync's
    # listing is held, i.e. after the scan judged it settled and before it is read. The appended
    # state was never at rest: no periodic upload may send it (settle is an hour, so it never
    # becomes settled in this test). The upload on exit sends it.
    src = tmp_path / "src"
    src.mkdir()
    live = src / "ckpt.bin"
    rest = random.Random(size).randbytes(size)
    live.write_bytes(rest)
    long_ago = live.stat().st_mtime_ns - 7200 * 10**9
    os.utime(live, ns=(long_ago, long_ago))
    proxy.scenario.add(make_rule("hold", method="GET", query="list-type", times=1))

    def lists() -> int:
        return sum(1 for e in list(proxy.log) if "list-type" in e.query)

    async with fault_mirror(cache_root) as m:
        await m.upload(f"s3://{bucket}/out", src, interval=0.05, settle=3600, atomic=atomic)
        await wait_for(lambda: proxy.count("hold") >= 1)
        await anyio.to_thread.run_sync(_append, live, b" then written again")
        seen = lists()
        proxy.gate.set()
        # Syncs run one after another, each listing at most twice: three more listings mean the
        # held sync has finished.
        await wait_for(lambda: lists() >= seen + 3)
        assert remote_tree(s3, bucket, "out/") == {}
    async with fault_mirror(cache_root) as m:
        got = await m.download(f"s3://{bucket}/out", local=tmp_path / "reader")
    assert (got / "ckpt.bin").read_bytes() == rest + b" then written again"
