"""Cancellation and Ctrl-C: cleanup runs to the end, nothing leaks, nobody else is cancelled.

Regression tests of issue 12, items 8 to 11 (repros in the issue): a waiter's cancellation is
its own, a forked child leaves the block without touching the parent's loop thread, a cancelled
ranged download closes its partial file, Ctrl-C aborts a background multipart upload.
"""

from __future__ import annotations

import _thread
import dataclasses
import os
import signal
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import anyio
import pytest

import pos3
from tests.conftest import local_tree, put, remote_tree, wait_for

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


# ---------------------------------------------------------------------------- item 8: shared download


def shared_waiters(core: pos3.AsyncMirror) -> int:
    """Callers waiting for a download of ``core`` that is still running (test-only peek)."""
    return sum(reg.waiters for reg in core._registry.downloads.values() if not reg.done.is_set())


def seed_dataset(s3: Any, bucket: str, prefix: str) -> dict[str, bytes]:
    files = {f"f{i:03d}.bin": bytes([i]) * 200_000 for i in range(40)}  # one GET at a time: a while
    put(s3, bucket, {f"{prefix}/{rel}": data for rel, data in files.items()})
    return files


@pytest.mark.anyio
async def test_cancelling_one_waiter_of_a_shared_download_leaves_the_other(
    s3: Any, bucket: str, cache_root: Path
) -> None:
    files = seed_dataset(s3, bucket, "ds")
    url = f"s3://{bucket}/ds"
    got: dict[str, Path] = {}
    async with pos3.amirror(cache_root=cache_root, show_progress=False, max_workers=1) as m:
        a_scope = anyio.CancelScope()

        async def caller_a() -> None:
            with a_scope:
                await m.download(url)

        async def caller_b() -> None:
            got["b"] = await m.download(url)

        async with anyio.create_task_group() as tg:
            tg.start_soon(caller_a)
            tg.start_soon(caller_b)
            await wait_for(lambda: shared_waiters(m) == 2)  # both wait for the one download
            a_scope.cancel()  # only A is cancelled (say its own timeout)
        assert a_scope.cancelled_caught
        assert local_tree(got["b"]) == files  # B got the whole download


@pytest.mark.anyio
async def test_cancelling_the_last_waiter_stops_the_download_and_a_new_call_restarts_it(
    s3: Any, bucket: str, cache_root: Path
) -> None:
    files = seed_dataset(s3, bucket, "ds")
    url = f"s3://{bucket}/ds"
    async with pos3.amirror(cache_root=cache_root, show_progress=False, max_workers=1) as m:
        staging = m.cache_root / ".pos3" / "staging"
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(m.download, url)
                await wait_for(lambda: shared_waiters(m) == 1)
                scope.cancel()
        assert scope.cancelled_caught
        # The cancelled caller returned after the download's cleanup: no partial file is left.
        assert not [p for p in staging.rglob("*") if p.is_file()]
        assert m._registry.downloads == {}
        assert local_tree(await m.download(url)) == files  # asked again: downloaded again, whole


def test_ctrl_c_in_one_thread_leaves_another_threads_shared_download(
    s3: Any, bucket: str, cache_root: Path
) -> None:
    """The sync facade: Ctrl-C interrupts the main thread's call; a worker thread's call of the
    same download goes on and gets the whole tree."""
    files = seed_dataset(s3, bucket, "ds")
    url = f"s3://{bucket}/ds"
    got: dict[str, Any] = {}
    with pos3.mirror(cache_root=cache_root, show_progress=False, max_workers=1) as sm:
        core = sm._core
        assert core is not None

        def caller_b() -> None:
            try:
                got["b"] = pos3.download(url)
            except BaseException as exc:  # pragma: no cover - reported below
                got["b"] = exc

        def interrupt_when_both_wait() -> None:
            for _ in range(4000):  # bounded: ~20 s
                if shared_waiters(core) == 2:
                    break
                threading.Event().wait(0.005)
            _thread.interrupt_main()

        b = threading.Thread(target=caller_b)
        watcher = threading.Thread(target=interrupt_when_both_wait)
        b.start()
        watcher.start()
        try:
            with pytest.raises(KeyboardInterrupt):
                pos3.download(url)  # caller A, in the main thread
        finally:
            watcher.join(timeout=30)
            b.join(timeout=60)
    assert isinstance(got["b"], Path), got["b"]
    assert local_tree(got["b"]) == files


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


# ---------------------------------------------------------------------------- item 9: fork


class _LeaveBlock(Exception):
    pass


def _wait_child(pid: int, timeout: float = 30.0) -> int:
    """The child's exit code; a child still running after ``timeout`` is killed and fails the test."""
    deadline = time.monotonic() + timeout
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0:
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung leaving the block")
        time.sleep(0.05)
    return os.waitstatus_to_exitcode(done[1])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.parametrize("how", ["falls out", "raises", "sys.exit"])
def test_forked_child_leaves_the_block_without_touching_the_parent(
    s3: Any, bucket: str, cache_root: Path, how: str
) -> None:
    read_fd, write_fd = os.pipe()
    pid = -1
    try:
        with pos3.mirror(cache_root=cache_root, show_progress=False):
            out = pos3.upload(f"s3://{bucket}/out", interval=None)
            (out / "parent.txt").write_text("from the parent")
            with warnings.catch_warnings():
                # Python >= 3.12 warns that forking a threaded process may deadlock; this test forks one.
                warnings.filterwarnings("ignore", message=r"This process .* is multi-threaded, use of fork\(\)",
                                        category=DeprecationWarning)
                pid = os.fork()
            if pid == 0:  # pragma: no cover - the child
                signal.alarm(20)  # a hung child dies rather than hanging the test run
                try:
                    pos3.ls("s3://any-bucket")
                except pos3.NoMirrorError as exc:
                    os.write(write_fd, b"refused " if "parent process" in str(exc) else b"other ")
                if how == "raises":
                    raise _LeaveBlock
                if how == "sys.exit":
                    raise SystemExit(0)
            else:
                os.close(write_fd)
                assert _wait_child(pid) == 0
                with os.fdopen(read_fd, "rb") as pipe:
                    assert pipe.read() == b"refused left"
                assert remote_tree(s3, bucket) == {}  # the child's exit uploaded nothing
                assert pos3.ls(f"s3://{bucket}") == []  # the parent's mirror still works
    except (_LeaveBlock, SystemExit):
        if pid != 0:
            raise
    if pid == 0:  # pragma: no cover - the child has left the block
        os.write(write_fd, b"left")
        os._exit(0)
    assert remote_tree(s3, bucket) == {"out/parent.txt": b"from the parent"}  # the parent's exit uploads


@pytest.mark.anyio
async def test_a_cancelled_file_hop_returns_only_after_its_thread_finished(tmp_path: Path) -> None:
    from pos3._progress import Progress
    from pos3._transfer.context import EngineOptions, Resources

    res = Resources(tmp_path, EngineOptions(), Progress(False))
    started, release = threading.Event(), threading.Event()
    finished: list[str] = []

    def write() -> None:  # a slow write: its file must not be touched after the task has unwound
        started.set()
        release.wait(10)
        time.sleep(0.1)
        finished.append("written")

    try:
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(res.in_thread, write)
                await anyio.to_thread.run_sync(started.wait, 10)
                scope.cancel()
                release.set()
        assert scope.cancelled_caught
        assert finished == ["written"]
    finally:
        await res.aclose()
