"""Bad input and bad disks are refused with an error naming the path; nothing mirrored is lost."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

import pos3
from tests.conftest import local_tree, put
from tests.faults.conftest import fault_mirror
from tests.faults.helpers import failed_keys

pytestmark = pytest.mark.anyio


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A small tmpfs at ``path`` (needs root and mount rights; the test is skipped otherwise)."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode}); needs root")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


async def test_unsafe_keys_are_refused_and_nothing_is_written(s3: Any, bucket: str, cache_root: Path) -> None:
    put(s3, bucket, {"data/ok.txt": b"ok"})
    async with fault_mirror(cache_root) as m:
        root = await m.download(f"s3://{bucket}/data")
    put(s3, bucket, {"data/../escape.txt": b"evil", "data/new.txt": b"new"})
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="data/")["Contents"]]
    assert "data/../escape.txt" in keys
    async with fault_mirror(cache_root) as m:
        with pytest.raises(pos3.UnsafeKeyError, match=r"data/\.\./escape\.txt"):
            await m.download(f"s3://{bucket}/data")
    assert local_tree(root) == {"ok.txt": b"ok"}  # what was mirrored is untouched
    assert not (root.parent / "escape.txt").exists()


@pytest.mark.parametrize("url", ["s3:/bucket/key", "s3://", "http://bucket/key", "s3://bad_bucket!/k"])
async def test_malformed_urls_are_refused(url: str, cache_root: Path, server: Any) -> None:
    async with fault_mirror(cache_root) as m:
        with pytest.raises(pos3.InvalidURLError):
            await m.download(url)


async def test_a_file_where_a_folder_is_needed(s3: Any, bucket: str, tmp_path: Path, cache_root: Path) -> None:
    put(s3, bucket, {"data/a.txt": b"a"})
    local = tmp_path / "not-a-folder"
    local.write_bytes(b"precious")
    async with fault_mirror(cache_root) as m:
        with pytest.raises(NotADirectoryError, match=str(local)):
            await m.download(f"s3://{bucket}/data", local)
    assert local.read_bytes() == b"precious"


async def test_full_disk_fails_naming_the_key_and_keeps_the_mirror(
    s3: Any, bucket: str, tmp_path: Path
) -> None:
    with tmpfs(tmp_path / "small", "1m") as disk:
        cache_root = disk / "cache"
        put(s3, bucket, {"data/small.bin": b"s" * 100_000})
        async with fault_mirror(cache_root) as m:
            root = await m.download(f"s3://{bucket}/data")
        put(s3, bucket, {"data/huge.bin": os.urandom(2 << 20), "data/small2.bin": b"t" * 1000})
        async with fault_mirror(cache_root) as m:
            with pytest.raises(pos3.TransferError) as info:
                await m.download(f"s3://{bucket}/data")
        # The huge file filled the disk (a small one written meanwhile may fail too); each is named.
        assert "data/huge.bin" in failed_keys(info.value) <= {"data/huge.bin", "data/small2.bin"}
        assert all(isinstance(f.error, OSError) and f.error.errno == errno.ENOSPC for f in info.value.failures)
        assert "No space left on device" in str(info.value)
        assert str(cache_root) in str(info.value)  # the file being written (in the private staging area)
        assert local_tree(root).items() <= {"small.bin": b"s" * 100_000, "small2.bin": b"t" * 1000}.items()
        assert local_tree(root)["small.bin"] == b"s" * 100_000
        assert not list(cache_root.rglob("*.part"))  # the partial file was removed: the space is back


async def test_read_only_disk_fails_naming_the_path_and_keeps_the_mirror(
    s3: Any, bucket: str, tmp_path: Path, cache_root: Path
) -> None:
    with tmpfs(tmp_path / "ro", "4m") as disk:
        local = disk / "mirror"
        put(s3, bucket, {"data/a.txt": b"a"})
        async with fault_mirror(cache_root) as m:
            await m.download(f"s3://{bucket}/data", local)
        done = await anyio.run_process(["mount", "-o", "remount,ro", str(disk)], check=False)
        if done.returncode != 0:
            pytest.skip(f"cannot remount read-only: {done.stderr.decode().strip()}")
        put(s3, bucket, {"data/b.txt": b"b"})
        async with fault_mirror(cache_root) as m:
            # Checked before any object is fetched: one error naming the folder, not one per file.
            with pytest.raises(PermissionError) as info:
                await m.download(f"s3://{bucket}/data", local)
        assert not isinstance(info.value, pos3.TransferError)
        assert str(local) in str(info.value)
        assert "Read-only file system" in str(info.value)
        assert local_tree(local) == {"a.txt": b"a"}
