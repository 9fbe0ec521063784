"""SIGKILL in the middle of a transfer, then run again: an exact mirror, no leftovers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.conftest import local_tree, put, remote_tree, wait_for
from tests.faults.conftest import fault_mirror
from tests.faults.proxy import FaultProxy, make_rule

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


class Child:
    """A pos3 transfer in a subprocess, killed with SIGKILL by the test."""

    def __init__(self, *args: str) -> None:
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.faults.crash_worker", *args], cwd=REPO, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def running(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.communicate(timeout=30)
        assert self.proc.returncode == -signal.SIGKILL, "the child finished before it was killed"


def _partial_names(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith((".part", ".tmp")) or ".pos3" in p.name]


async def test_sigkill_mid_download_then_rerun_is_exact(
    proxy: FaultProxy, s3: Any, bucket: str, cache_root: Path
) -> None:
    files = {f"data/small-{i}.bin": os.urandom(5_000) for i in range(6)}
    files["data/big.bin"] = os.urandom(3 << 20)  # ranged: 12 parts of 256 KiB
    put(s3, bucket, files)
    proxy.scenario.add(make_rule("latency", delay=0.02, method="GET", path="/data/big.bin"))
    child = Child("download", f"s3://{bucket}/data", str(cache_root))
    try:
        await wait_for(lambda: proxy.body_bytes > 600_000 or not child.running(), timeout=60)
    finally:
        child.kill()
    root = cache_root / "_" / bucket / "data"
    # Nothing half-written is visible in the mirrored folder; partial bytes live in the private staging area.
    assert not (root / "big.bin").exists()
    if root.exists():
        assert _partial_names(root) == []
    staged = list((cache_root / ".pos3" / "staging").rglob("*.part"))
    assert staged, "the kill should have left a partial file in staging"

    proxy.scenario.clear()
    async with fault_mirror(cache_root, part_size=256 << 10) as m:
        await m.download(f"s3://{bucket}/data")
    assert local_tree(root) == {k[5:]: v for k, v in files.items()}
    assert not list((cache_root / ".pos3" / "staging").rglob("*.part"))  # leftovers cleaned up


async def test_sigkill_mid_multipart_upload_then_rerun_is_exact(
    proxy: FaultProxy, server: Any, s3: Any, bucket: str, cache_root: Path, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    big = os.urandom((10 << 20) + 4321)  # three parts of 5 MiB, 5 MiB and the rest
    (src / "big.bin").write_bytes(big)
    (src / "note.txt").write_bytes(b"note")
    server.log.clear()
    # The first part's answer never comes back: the child is stuck mid-upload, a multipart upload open.
    proxy.scenario.add(make_rule("hold", method="PUT", query="partNumber", times=1))
    child = Child("upload", f"s3://{bucket}/out", str(cache_root), str(src))
    try:
        await wait_for(lambda: server.log.count("PUT", query_contains="partNumber") >= 1 or not child.running(),
                       timeout=60)
    finally:
        child.kill()
    open_uploads = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert [u["Key"] for u in open_uploads] == ["out/big.bin"]
    assert "out/big.bin" not in remote_tree(s3, bucket, "out/")
    assert list((cache_root / ".pos3" / "multipart").glob("*.json"))

    proxy.scenario.clear()
    proxy.gate.set()
    async with fault_mirror(cache_root) as m:
        await m.upload(f"s3://{bucket}/out", src, interval=None)
    assert remote_tree(s3, bucket, "out/") == {"out/big.bin": big, "out/note.txt": b"note"}
    # The upload the killed run left open was aborted: no hidden parts stay billed.
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert not list((cache_root / ".pos3" / "multipart").glob("*.json"))


async def test_damaged_state_store_is_rebuilt(proxy: FaultProxy, s3: Any, bucket: str, cache_root: Path) -> None:
    files = {f"data/f{i}.bin": os.urandom(1000 + i) for i in range(5)}
    put(s3, bucket, files)
    async with fault_mirror(cache_root) as m:
        root = await m.download(f"s3://{bucket}/data")
    db = cache_root / ".pos3" / "state.db"
    # As if a crash left it half-written: keep the first bytes, garble the rest.
    data = await anyio.Path(db).read_bytes()
    await anyio.Path(db).write_bytes(data[:100] + b"\xde\xad" * 2000)
    for suffix in ("-wal", "-shm"):
        (cache_root / ".pos3" / f"state.db{suffix}").unlink(missing_ok=True)
    s3.put_object(Bucket=bucket, Key="data/f1.bin", Body=b"changed")
    files["data/f1.bin"] = b"changed"
    async with fault_mirror(cache_root) as m:
        await m.download(f"s3://{bucket}/data")
    assert local_tree(root) == {k[5:]: v for k, v in files.items()}


@pytest.mark.parametrize("ranges", ["as before", "sized anew"])
async def test_sigkill_mid_large_download_resumes_with_the_remainder_only(
    proxy: FaultProxy, s3: Any, bucket: str, cache_root: Path, ranges: str
) -> None:
    """"sized anew": the next run would cut the object otherwise (its range size follows the
    batch): the partial file still resumes, with the ranges it was started with."""
    import dataclasses
    import json

    size, part = 3 << 20, 256 << 10  # 12 parts
    put(s3, bucket, {"data/big.bin": os.urandom(size)})
    proxy.scenario.add(make_rule("latency", delay=0.05, method="GET", path="/data/big.bin"))
    child = Child("download", f"s3://{bucket}/data", str(cache_root))
    journals: list[Path] = []

    def some_parts_done() -> bool:
        journals[:] = list((cache_root / ".pos3" / "staging").rglob("*.resume.json"))
        return (bool(journals) and len(json.loads(journals[0].read_text())["done"]) >= 4) or not child.running()

    try:
        await wait_for(some_parts_done, timeout=60)
    finally:
        child.kill()
    done = json.loads(journals[0].read_text())["done"]
    assert 4 <= len(done) < 12
    proxy.scenario.clear()
    before = proxy.body_bytes
    m = fault_mirror(cache_root, part_size=part)
    if ranges == "sized anew":  # 3 MiB alone in 8 ranges: 384 KiB each
        m._options = dataclasses.replace(m._options, part_size=64 << 10, download_part_size=None)
    async with m:
        await m.download(f"s3://{bucket}/data")
    fetched = proxy.body_bytes - before
    remainder = size - len(done) * part
    assert remainder <= fetched < remainder + part  # the parts on disk were not fetched again
    local = cache_root / "_" / bucket / "data" / "big.bin"
    assert remote_tree(s3, bucket, "data/")["data/big.bin"] == local.read_bytes()
    assert not list((cache_root / ".pos3" / "staging").rglob("*.resume.*"))


async def test_changed_object_restarts_its_resumed_download_from_zero(
    proxy: FaultProxy, s3: Any, bucket: str, cache_root: Path
) -> None:
    import json

    size, part = 3 << 20, 256 << 10
    put(s3, bucket, {"data/big.bin": os.urandom(size)})
    proxy.scenario.add(make_rule("latency", delay=0.05, method="GET", path="/data/big.bin"))
    child = Child("download", f"s3://{bucket}/data", str(cache_root))

    def some_parts_done() -> bool:
        found = list((cache_root / ".pos3" / "staging").rglob("*.resume.json"))
        return (bool(found) and len(json.loads(found[0].read_text())["done"]) >= 2) or not child.running()

    try:
        await wait_for(some_parts_done, timeout=60)
    finally:
        child.kill()
    proxy.scenario.clear()
    new = os.urandom(size)
    put(s3, bucket, {"data/big.bin": new})  # same size, new ETag
    async with fault_mirror(cache_root, part_size=part) as m:
        await m.download(f"s3://{bucket}/data")
    assert (cache_root / "_" / bucket / "data" / "big.bin").read_bytes() == new
