"""Features for training jobs: sharded downloads, quiescent uploads, atomic checkpoint publishing."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

import pos3
from tests.conftest import local_tree, put, remote_tree

pytestmark = pytest.mark.anyio


async def test_shards_are_disjoint_cover_and_balanced(open_mirror: Any, s3: Any, bucket: str, tmp_path: Path) -> None:
    sizes = [1, 5, 9, 13, 200, 7, 3, 150, 64, 64, 32, 8, 1000, 2, 77, 300, 11, 450]
    put(s3, bucket, {f"ds/part-{i:02}": bytes([i]) * n for i, n in enumerate(sizes)})
    world = 3
    shards: list[dict[str, bytes]] = []
    for rank in range(world):  # one job per rank, as on the nodes of a distributed job
        async with open_mirror() as m:
            path = await m.download(f"s3://{bucket}/ds", local=tmp_path / f"rank{rank}", shard=(rank, world))
            shards.append(local_tree(path))
    async with open_mirror() as m:
        with pytest.raises(ValueError, match="rank"):
            await m.download(f"s3://{bucket}/ds", local=tmp_path / "bad", shard=(3, 3))
    names = [set(s) for s in shards]
    assert set().union(*names) == {f"part-{i:02}" for i in range(len(sizes))}
    assert sum(len(n) for n in names) == len(sizes)  # disjoint
    loads = [sum(len(v) for v in s.values()) for s in shards]
    assert max(loads) - min(loads) <= max(sizes)
    # Deterministic: the same rank gets the same files again (nothing to transfer, nothing deleted).
    async with open_mirror() as m:
        plan = await m.plan_download(f"s3://{bucket}/ds", local=tmp_path / "rank1", shard=(1, world))
    assert plan.actions == ()


PHASES = 6  # bursts of appends, each followed by a rest but the last


async def test_background_upload_never_sends_a_file_still_being_written(
    open_mirror: Any, s3: Any, bucket: str
) -> None:
    settle = 0.3
    # The writer proves how long each state it left was at rest: the state's mtime, and the wall
    # clock read after the next write returned. A periodic upload may send a state only if it saw
    # it at rest for `settle` seconds, so only a state whose proof shows that may ever be in the
    # bucket; the final state is sent by the upload on exit. A loaded machine that pauses the
    # writer makes more states legitimately sendable, never a false failure.
    rested: dict[bytes, int] = {}  # state -> ns it was at rest, at most
    final: list[bytes] = []
    seen: set[bytes] = set()
    async with open_mirror() as m:
        out = await m.upload(f"s3://{bucket}/ckpt", interval=0.1, settle=settle)
        target = out / "model.bin"
        stop = threading.Event()

        def writer() -> None:
            content, mtime = b"", 0
            for phase in range(PHASES):
                for i in range(10):  # ~0.2 s of appends, 20 ms apart
                    chunk = bytes([phase * 10 + i]) * 4096
                    with open(target, "ab") as fh:
                        fh.write(chunk)
                        now_mtime = os.fstat(fh.fileno()).st_mtime_ns
                    if content:
                        rested[content] = time.time_ns() - mtime
                    content, mtime = content + chunk, now_mtime
                    time.sleep(0.02)
                if phase < PHASES - 1:
                    # At rest: a background sync may send this state. Writing resumes while the
                    # syncs still hash the file (its record is racy), the moment a sync may have
                    # judged the old state settled and read the new one.
                    time.sleep(3 * settle)
            final.append(content)
            stop.set()

        thread = threading.Thread(target=writer)
        thread.start()
        with anyio.fail_after(60):
            while not stop.is_set():
                objects = remote_tree(s3, bucket, "ckpt/")
                if "ckpt/model.bin" in objects:
                    seen.add(objects["ckpt/model.bin"])
                await anyio.sleep(0.05)
        thread.join(timeout=10)
    assert remote_tree(s3, bucket, "ckpt/")["ckpt/model.bin"] == final[0]
    never_at_rest = {len(s) for s in seen if s != final[0] and rested.get(s, 0) < settle * 1e9}
    assert not never_at_rest, f"a periodic upload sent states never at rest for {settle} s (sizes {never_at_rest})"


async def test_atomic_publish_round_trip_and_incremental(
    open_mirror: Any, s3: Any, bucket: str, server: Any, tmp_path: Path
) -> None:
    src = tmp_path / "ckpt"
    (src / "shards").mkdir(parents=True)
    (src / "empty").mkdir()
    (src / "model.pt").write_bytes(b"weights v1")
    (src / "shards" / "0").write_bytes(b"shard zero")
    async with open_mirror() as m:
        await m.upload(f"s3://{bucket}/run/ckpt", local=src, interval=None, atomic=True)
    async with open_mirror() as m:
        got = await m.download(f"s3://{bucket}/run/ckpt", local=tmp_path / "reader")
    assert local_tree(got) == local_tree(src)
    assert (got / "empty").is_dir()

    (src / "model.pt").write_bytes(b"weights v2!")
    server.log.clear()
    async with open_mirror() as m:
        await m.upload(f"s3://{bucket}/run/ckpt", local=src, interval=None, atomic=True)
    assert server.log.count("PUT") == 2  # the changed object and the commit; "shard zero" is reused
    async with open_mirror() as m:
        await m.download(f"s3://{bucket}/run/ckpt", local=tmp_path / "reader")
    assert local_tree(got) == local_tree(src)


async def test_half_published_snapshot_is_ignored(open_mirror: Any, s3: Any, bucket: str, tmp_path: Path) -> None:
    src = tmp_path / "ckpt"
    src.mkdir()
    (src / "a").write_bytes(b"old a")
    async with open_mirror() as m:
        await m.upload(f"s3://{bucket}/ck", local=src, interval=None, atomic=True)
    commits = [k for k in remote_tree(s3, bucket, "ck/.pos3/commits/")]
    assert len(commits) == 1
    # A newer commit whose objects never arrived (a writer killed between the two steps, or a
    # commit that raced ahead): readers must keep seeing the complete snapshot.
    s3.put_object(Bucket=bucket, Key="ck/.pos3/commits/000000000099.json",
                  Body=b'{"format": "pos3-snapshot/1", "seq": 99, "files": {"a": {"xxh3": "'
                  + b"f" * 32 + b'", "size": 5}}, "dirs": []}')
    s3.put_object(Bucket=bucket, Key="ck/.pos3/objects/" + "e" * 32, Body=b"stray object")
    async with open_mirror() as m:
        got = await m.download(f"s3://{bucket}/ck", local=tmp_path / "r")
    assert local_tree(got) == {"a": b"old a"}


async def test_reader_during_publish_sees_old_or_new_never_a_mix(
    s3: Any, bucket: str, tmp_path: Path, cache_root: Path
) -> None:
    # Writer and readers are separate mirrors at once (separate jobs in real life): amirror.
    def open_mirror() -> Any:
        return pos3.amirror(cache_root=cache_root, show_progress=False)

    src = tmp_path / "ckpt"
    src.mkdir()
    old = {f"f{i:02}": b"old-%02d" % i for i in range(30)}
    new = {f"f{i:02}": b"NEW-%02d" % i for i in range(30)}
    for name, data in old.items():
        (src / name).write_bytes(data)
    async with open_mirror() as m:
        await m.upload(f"s3://{bucket}/ck", local=src, interval=None, atomic=True)
    for name, data in new.items():
        (src / name).write_bytes(data)
    seen: list[dict[str, bytes]] = []
    done = anyio.Event()
    async with open_mirror() as writer, anyio.create_task_group() as tg:

        async def publish() -> None:
            await writer.upload(f"s3://{bucket}/ck", local=src, interval=None, atomic=True)
            await writer.flush()
            done.set()

        tg.start_soon(publish)
        for i in range(60):  # bounded
            async with open_mirror() as reader:
                got = await reader.download(f"s3://{bucket}/ck", local=tmp_path / f"r{i}")
            seen.append(local_tree(got))
            if done.is_set():
                break
    async with open_mirror() as reader:
        final = await reader.download(f"s3://{bucket}/ck", local=tmp_path / "final")
    assert local_tree(final) == new
    assert seen and all(tree in (old, new) for tree in seen)


def test_bounded_cache_evicts_lru_but_never_a_pinned_tree(s3: Any, bucket: str, cache_root: Path,
                                                          tmp_path: Path) -> None:
    import subprocess
    import sys
    import textwrap

    for name in "abcd":
        put(s3, bucket, {f"{name}/blob": bytes([ord(name)]) * 100_000})
    ready, stop = tmp_path / "ready", tmp_path / "stop"
    holder = textwrap.dedent(f"""
        import pathlib, time, pos3
        with pos3.mirror(cache_root={str(cache_root)!r}, show_progress=False):
            pos3.download("s3://{bucket}/a")
            pathlib.Path({str(ready)!r}).touch()
            for _ in range(600):  # bounded: 60 s
                if pathlib.Path({str(stop)!r}).exists():
                    break
                time.sleep(0.1)
    """)
    proc = subprocess.Popen([sys.executable, "-c", holder])
    try:
        for _ in range(600):
            if ready.exists() or proc.poll() is not None:
                break
            time.sleep(0.05)
        assert ready.exists()
        tree = cache_root / "_" / bucket
        with pos3.mirror(cache_root=cache_root, show_progress=False):
            pos3.download(f"s3://{bucket}/b")  # least recently used once this mirror closes
        with pos3.mirror(cache_root=cache_root, show_progress=False, cache_max_bytes=250_000):
            pos3.download(f"s3://{bucket}/c")
            # a (300 kB in all): a is pinned by the other process, c by this one: b goes.
            assert (tree / "a" / "blob").exists()
            assert not (tree / "b").exists()
            assert (tree / "c" / "blob").exists()
        stop.touch()
        assert proc.wait(timeout=60) == 0
        with pos3.mirror(cache_root=cache_root, show_progress=False, cache_max_bytes=250_000):
            pos3.download(f"s3://{bucket}/d")
        assert not (tree / "a").exists()  # unpinned now, and least recently used
        assert (tree / "c" / "blob").exists() and (tree / "d" / "blob").exists()
        with pos3.mirror(cache_root=cache_root, show_progress=False):
            assert local_tree(pos3.download(f"s3://{bucket}/b")) == {"blob": b"b" * 100_000}  # state consistent
    finally:
        stop.touch()
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
