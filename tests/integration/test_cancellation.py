"""Cancellation and Ctrl-C: cleanup runs to the end, nothing leaks, nobody else is cancelled.

Regression tests of issue 12, items 8 to 11 (repros in the issue): a waiter's cancellation is
its own, a forked child leaves the block without touching the parent's loop thread, a cancelled
ranged download closes its partial file, Ctrl-C aborts a background multipart upload.
"""

from __future__ import annotations

import _thread
import dataclasses
import os
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest

import pos3
from tests.conftest import put, wait_for

MiB = 1 << 20
SMALL = {"part_size": 5 * MiB, "multipart_threshold": 5 * MiB, "ranged_threshold": 256 << 10}


def small_parts(m: pos3.AsyncMirror) -> pos3.AsyncMirror:
    """Test-only, before the mirror opens: ranged downloads with small objects (see tests/faults)."""
    m._options = dataclasses.replace(m._options, **SMALL)
    return m


def partial_fds() -> list[str]:
    """Open descriptors of this process to partial (ranged) download files."""
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if ".resume.part" in target:
            out.append(f"fd {fd} -> {target}")
    return out


def partial_written(staging: Path) -> bool:
    """Some bytes of a partial file are on disk (its download is under way)."""
    return any(p.stat().st_blocks > 0 for p in staging.rglob("*.resume.part"))


needs_proc = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts fds in /proc/self/fd")


# ---------------------------------------------------------------------------- item 10: fd leak


@needs_proc
@pytest.mark.anyio
async def test_cancelled_ranged_download_closes_its_partial_file(s3: Any, bucket: str, cache_root: Path) -> None:
    put(s3, bucket, {f"ckpt{i}/model.bin": os.urandom(12 * MiB) for i in range(3)})
    async with small_parts(pos3.amirror(cache_root=cache_root, show_progress=False, max_workers=1)) as m:
        staging = m.cache_root / ".pos3" / "staging"
        for i in range(3):
            with anyio.CancelScope() as scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(m.download, f"s3://{bucket}/ckpt{i}")
                    await wait_for(lambda: partial_written(staging), step=0.005)
                    scope.cancel()
            assert scope.cancelled_caught
            assert partial_fds() == []  # closed at once, not when the mirror closes
            assert not [p for p in staging.rglob("*") if p.is_file()]  # and removed
    assert partial_fds() == []


@needs_proc
def test_ctrl_c_during_a_ranged_download_closes_its_partial_file(s3: Any, bucket: str, cache_root: Path) -> None:
    put(s3, bucket, {"ckpt/model.bin": os.urandom(40 * MiB)})  # ranged from 32 MiB
    staging = cache_root / ".pos3" / "staging"
    done = threading.Event()

    def interrupt_when_bytes_flow() -> None:
        for _ in range(4000):  # bounded: ~20 s
            if done.is_set() or partial_written(staging):
                break
            threading.Event().wait(0.005)
        if not done.is_set():
            _thread.interrupt_main()

    watcher = threading.Thread(target=interrupt_when_bytes_flow)
    with pos3.mirror(cache_root=cache_root, show_progress=False, max_workers=1):
        watcher.start()
        try:
            with pytest.raises(KeyboardInterrupt):
                pos3.download(f"s3://{bucket}/ckpt")
        finally:
            done.set()
            watcher.join(timeout=30)
        assert partial_fds() == []
        assert not [p for p in staging.rglob("*") if p.is_file()]


# ---------------------------------------------------------------------------- item 11: Ctrl-C, multipart


@pytest.mark.anyio
async def test_ctrl_c_during_a_background_multipart_upload_aborts_it(
    open_mirror: Any, s3: Any, bucket: str, cache_root: Path
) -> None:
    """Ctrl-C (sync facade) or cancellation (async) while a background multipart upload is open."""

    def open_uploads() -> list[Any]:
        return list(s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []))

    async def start_background_multipart(m: Any) -> None:
        out = await m.upload(f"s3://{bucket}/run", interval=0.5, settle=None)
        (out / "model.bin").write_bytes(os.urandom(20 * MiB))  # 3 parts at 2 MiB/s: ~10 s
        await wait_for(lambda: bool(open_uploads()))

    if open_mirror.kind == "mirror":
        with pytest.raises(KeyboardInterrupt):
            async with open_mirror(max_upload_bytes_per_second=2 * MiB) as m:
                await start_background_multipart(m)
                raise KeyboardInterrupt  # what Ctrl-C raises in the block
    else:
        with anyio.CancelScope() as scope:
            async with open_mirror(max_upload_bytes_per_second=2 * MiB) as m:
                await start_background_multipart(m)
                scope.cancel()
                await anyio.sleep(60)  # cancelled at once
        assert scope.cancelled_caught
    assert open_uploads() == []  # aborted before the clients closed
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)  # nothing completed
    assert list((cache_root / ".pos3" / "multipart").glob("*.json")) == []  # journal entry removed
