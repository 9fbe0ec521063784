"""Coarse timestamps and replaced files never hide a change (issue 12, items 4 and 6).

File systems with 1-second timestamps (HFS+, FAT, many NFS/FUSE/Lustre mounts) are simulated
by setting every mtime to a whole second with `os.utime`, as the original reproduction did.
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

import pos3
from tests.conftest import local_tree, put, wait_for

pytestmark = pytest.mark.anyio

MiB = 1 << 20


def coarse(path: Path, second: int) -> None:
    """Give ``path`` the mtime a 1-second file system would: the whole ``second``."""
    os.utime(path, ns=(second * 10**9, second * 10**9))


def rewrite_in_place(path: Path, data: bytes) -> None:
    with open(path, "r+b") as fh:
        fh.write(data)


async def test_a_same_size_rewrite_in_the_same_second_is_uploaded(
    open_mirror: Any, s3: Any, bucket: str, cache_root: Path
) -> None:
    second = int(time.time())
    started = time.time_ns()
    async with open_mirror() as m:
        out = await m.upload(f"s3://{bucket}/run", interval=None)
        (out / "metrics.json").write_text('{"step": 000001}')
        coarse(out / "metrics.json", second)
    ended = time.time_ns()
    # The record says when it was taken: a later run can tell whether the mtime proves anything.
    db = sqlite3.connect(cache_root / ".pos3" / "state.db")
    [(mtime_ns, recorded_ns)] = db.execute("SELECT mtime_ns, recorded_ns FROM files").fetchall()
    db.close()
    assert mtime_ns == second * 10**9 and started <= recorded_ns <= ended
    rewrite_in_place(out / "metrics.json", b'{"step": 000002}')  # same size, inode and (coarse) mtime
    coarse(out / "metrics.json", second)
    async with open_mirror() as m:
        await m.upload(f"s3://{bucket}/run", interval=None)
    assert s3.get_object(Bucket=bucket, Key="run/metrics.json")["Body"].read() == b'{"step": 000002}'


async def test_a_file_rewritten_during_its_multipart_upload_is_never_recorded_in_sync(
    open_mirror: Any, s3: Any, bucket: str, tmp_path: Path
) -> None:
    v1, v2 = b"1" * (12 * MiB), b"2" * (12 * MiB)
    src = tmp_path / "src"
    src.mkdir()
    (src / "model.bin").write_bytes(v1)
    second = int(time.time())
    coarse(src / "model.bin", second)

    async def rewrite() -> None:
        await wait_for(lambda: bool(s3.list_multipart_uploads(Bucket=bucket).get("Uploads")), timeout=90)
        rewrite_in_place(src / "model.bin", v2)  # same size, same inode, same (coarse) mtime
        coarse(src / "model.bin", second)

    async with anyio.create_task_group() as tg:
        tg.start_soon(rewrite)
        async with open_mirror(max_upload_bytes_per_second=4 * MiB) as m:
            await m.upload(f"s3://{bucket}/run", local=src, interval=None)
        # the exit upload runs here, while `rewrite` changes the file
    async with open_mirror() as m:  # a later sync sends the file as it is now
        await m.upload(f"s3://{bucket}/run", local=src, interval=None)
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")
    # The object matches its fingerprint (a download checks it) and holds what the file holds.
    async with open_mirror(cache_root=tmp_path / "elsewhere") as m:
        got = await m.download(f"s3://{bucket}/run/model.bin", local=tmp_path / "got.bin")
    assert got.read_bytes() == v2


async def test_a_file_replaced_with_the_same_size_and_mtime_is_restored(
    open_mirror: Any, s3: Any, bucket: str
) -> None:
    put(s3, bucket, {"ds/a.bin": b"A" * 1000})
    async with open_mirror() as m:
        path = await m.download(f"s3://{bucket}/ds")
    before = os.stat(path / "a.bin")
    tmp = path / "a.bin.tmp"  # cp -p / rsync -t / a tar restore: new inode, timestamps copied
    tmp.write_bytes(b"B" * 1000)
    os.utime(tmp, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.replace(tmp, path / "a.bin")
    assert os.stat(path / "a.bin").st_ino != before.st_ino
    async with open_mirror() as m:
        plan = await m.plan_download(f"s3://{bucket}/ds")
        assert [(Path(a.dst).name, a.reason) for a in plan.actions] == [("a.bin", "changed locally")]
        await m.download(f"s3://{bucket}/ds")
    assert local_tree(path) == {"a.bin": b"A" * 1000}


async def test_a_state_store_of_the_previous_format_is_rebuilt(
    open_mirror: Any, s3: Any, bucket: str, cache_root: Path
) -> None:
    put(s3, bucket, {"d/a": b"a"})
    (cache_root / ".pos3").mkdir(parents=True)
    db = sqlite3.connect(cache_root / ".pos3" / "state.db")
    db.execute("CREATE TABLE meta (k TEXT PRIMARY KEY, v TEXT NOT NULL)")
    db.execute("INSERT INTO meta VALUES ('schema', '1')")
    db.execute(  # format 1: no ctime, no record time
        "CREATE TABLE files (path TEXT PRIMARY KEY, key TEXT NOT NULL, etag TEXT NOT NULL, size INTEGER NOT NULL,"
        " local_size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, inode INTEGER NOT NULL, xxh3 TEXT NOT NULL,"
        " last_modified TEXT NOT NULL DEFAULT '', checksum TEXT NOT NULL DEFAULT '') WITHOUT ROWID")
    path = cache_root / "_" / bucket / "d"
    db.execute("INSERT INTO files VALUES (?, 'd/a', 'stale', 1, 1, 1, 1, 'x', '', '')", (str(path / "a"),))
    db.commit()
    db.close()
    async with open_mirror() as m:
        assert await m.download(f"s3://{bucket}/d") == path
    assert local_tree(path) == {"a": b"a"}
    db = sqlite3.connect(cache_root / ".pos3" / "state.db")
    assert db.execute("SELECT v FROM meta WHERE k='schema'").fetchone() == ("2",)
    assert db.execute("SELECT etag FROM files").fetchall() != [("stale",)]
    db.close()


async def test_downloaded_files_take_their_objects_last_modified_time(
    open_mirror: Any, s3: Any, bucket: str, cache_root: Path
) -> None:
    """As ``aws s3 sync`` does: the file shows the object's age, and its record (taken at download)
    is judged racy or not from that time, so an old object is not read again by the next sync."""
    objects = {"ds/small.txt": b"s" * 100, "ds/medium.bin": b"m" * (3 * MiB)}  # in memory; streamed to disk
    put(s3, bucket, objects)
    async with open_mirror() as m:
        path = await m.download(f"s3://{bucket}/ds")
    for key in objects:
        stamp = s3.head_object(Bucket=bucket, Key=key)["LastModified"]
        assert os.stat(path / key.removeprefix("ds/")).st_mtime_ns == int(stamp.timestamp()) * 10**9, key
    db = sqlite3.connect(cache_root / ".pos3" / "state.db")
    rows = dict(db.execute("SELECT key, mtime_ns FROM files").fetchall())
    db.close()
    assert rows == {k: os.stat(path / k.removeprefix("ds/")).st_mtime_ns for k in objects}


async def test_a_ranged_download_takes_its_objects_last_modified_time(s3: Any, bucket: str, cache_root: Path
                                                                      ) -> None:
    put(s3, bucket, {"big.bin": b"b" * (3 * MiB)})
    m = pos3.amirror(cache_root=cache_root, show_progress=False)
    m._options = dataclasses.replace(m._options, ranged_threshold=MiB, download_part_size=MiB)  # 3 ranges
    async with m:
        path = await m.download(f"s3://{bucket}/big.bin")
    stamp = s3.head_object(Bucket=bucket, Key="big.bin")["LastModified"]
    assert os.stat(path).st_mtime_ns == int(stamp.timestamp()) * 10**9
    assert path.read_bytes() == b"b" * (3 * MiB)
