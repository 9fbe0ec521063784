"""The blocking facade: threads, a running event loop, fork, Ctrl-C, nesting, the decorator."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import warnings
from pathlib import Path
from typing import Any

import pytest

import pos3
from tests.conftest import CountingMotoServer, local_tree, put, remote_tree


def test_nested_mirror_raises(server: CountingMotoServer, cache_root: Path) -> None:
    outer = pos3.mirror(cache_root=cache_root, show_progress=False)
    inner = pos3.mirror(cache_root=cache_root)
    with outer, pytest.raises(RuntimeError, match="already active"), inner:
        pass
    # The outer one closed cleanly: a new mirror opens.
    with pos3.mirror(cache_root=cache_root, show_progress=False):
        pass


def test_with_mirror_decorator(s3: Any, bucket: str, cache_root: Path) -> None:
    put(s3, bucket, {"d/a": b"1"})

    @pos3.with_mirror(cache_root=cache_root, show_progress=False)
    def job() -> dict[str, bytes]:
        return local_tree(pos3.download(f"s3://{bucket}/d"))

    assert job() == {"a": b"1"}
    with pytest.raises(RuntimeError):
        pos3.ls(f"s3://{bucket}")  # outside again


def test_concurrent_identical_calls_from_threads_transfer_once(
    s3: Any, bucket: str, cache_root: Path, server: CountingMotoServer
) -> None:
    put(s3, bucket, {f"d/f{i}": b"x" * 100 for i in range(20)})
    results: list[Path] = []
    errors: list[BaseException] = []
    with pos3.mirror(cache_root=cache_root, show_progress=False):
        server.log.clear()

        def worker() -> None:
            try:
                results.append(pos3.download(f"s3://{bucket}/d"))
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    assert not errors
    assert len(set(results)) == 1 and len(results) == 8
    object_gets = [r for r in server.log.requests if r[0] == "GET" and "/d/f" in r[1]]
    assert len(object_gets) == 20


def test_mirror_inside_a_running_event_loop(s3: Any, bucket: str, cache_root: Path) -> None:
    put(s3, bucket, {"d/a": b"1"})

    async def notebook_cell() -> dict[str, bytes]:
        # Like a Jupyter cell: blocking pos3 calls on a thread that already runs a loop.
        with pos3.mirror(cache_root=cache_root, show_progress=False):
            return local_tree(pos3.download(f"s3://{bucket}/d"))

    assert asyncio.run(notebook_cell()) == {"a": b"1"}


def test_keyboard_interrupt_never_uploads_or_deletes(s3: Any, bucket: str, cache_root: Path) -> None:
    put(s3, bucket, {"out/precious.txt": b"keep me"})
    with pytest.raises(KeyboardInterrupt), pos3.mirror(cache_root=cache_root, show_progress=False):
        out = pos3.upload(f"s3://{bucket}/out", interval=None)  # delete=True by default
        (out / "half-written.txt").write_bytes(b"partial")
        raise KeyboardInterrupt
    assert remote_tree(s3, bucket) == {"out/precious.txt": b"keep me"}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_gets_a_clear_error_and_valid_paths(s3: Any, bucket: str, cache_root: Path) -> None:
    put(s3, bucket, {"d/a": b"payload"})
    with pos3.mirror(cache_root=cache_root, show_progress=False):
        path = pos3.download(f"s3://{bucket}/d")
        read_fd, write_fd = os.pipe()
        with warnings.catch_warnings():
            # Python >= 3.12 warns that forking a threaded process may deadlock; that is the point.
            warnings.filterwarnings("ignore", message=".*fork.*", category=DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            code = 0
            try:
                try:
                    pos3.download(f"s3://{bucket}/d")
                    code = 3
                except RuntimeError as exc:
                    code = 0 if "parent process" in str(exc) else 4
                if (path / "a").read_bytes() != b"payload":
                    code = 5
            finally:
                os.write(write_fd, bytes([code]))
                os._exit(code)
        os.close(write_fd)
        _, status = os.waitpid(pid, 0)
        result = os.read(read_fd, 1)
        os.close(read_fd)
    assert result == bytes([0])
    assert os.waitstatus_to_exitcode(status) == 0


def test_ctrl_c_during_a_transfer_cleans_up_and_joins(s3: Any, bucket: str, cache_root: Path) -> None:
    import _thread

    put(s3, bucket, {f"big/f{i}": os.urandom(3 << 20) for i in range(12)})
    staging = cache_root / ".pos3" / "staging"
    before = set(threading.enumerate())

    def has_bytes(part: Path) -> bool:
        try:
            return part.stat().st_size > 0
        except FileNotFoundError:  # placed (renamed) between the listing and the stat: bytes flowed
            return True

    def interrupt_when_bytes_flow() -> None:
        try:
            for _ in range(2000):  # bounded: ~20 s
                if any(has_bytes(p) for p in staging.rglob("*.part")) or any(
                    p.is_file() for p in (cache_root / "_").rglob("f*")
                ):
                    break
                threading.Event().wait(0.01)
        finally:  # the interrupt is what the test waits for: never lost to an error here
            _thread.interrupt_main()

    watcher = threading.Thread(target=interrupt_when_bytes_flow)
    # interrupt_main() does nothing while SIGINT is ignored, as it is when the runner was started
    # as a background job (`pytest &`, nohup, some CI shells): give this test Python's own handler.
    saved = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt), pos3.mirror(cache_root=cache_root, show_progress=False,
                                                           max_workers=2):
            watcher.start()
            pos3.download(f"s3://{bucket}/big")
    finally:
        signal.signal(signal.SIGINT, saved)
    watcher.join(timeout=30)
    assert not list(staging.rglob("*.part"))
    target = cache_root / "_" / bucket / "big"
    for f in target.glob("*"):
        assert f.stat().st_size == 3 << 20  # complete files only
    # anyio's idle worker threads are told to stop when the loop ends, and exit a moment later.
    for _ in range(400):  # bounded: ~20 s
        if set(threading.enumerate()) <= before:
            break
        threading.Event().wait(0.05)
    assert set(threading.enumerate()) <= before
