"""sync() keeps local work: its download never overwrites or deletes what was not in sync (issue 12, item 5).

A job writes into a `sync()` folder and may be killed before its upload; on restart, `sync()`
must keep what the job wrote (and upload it), pull only what changed in S3 for files that were
in sync, and refuse, naming them, files changed on both sides.
"""

from __future__ import annotations

from typing import Any

import pytest

import pos3
from tests.conftest import local_tree, put, remote_tree

pytestmark = pytest.mark.anyio


async def test_unsaved_and_edited_files_are_kept_and_uploaded(open_mirror: Any, s3: Any, bucket: str) -> None:
    put(s3, bucket, {"run/ckpt-1.pt": b"one", "run/notes.txt": b"v1"})
    async with open_mirror() as m:
        path = await m.sync(f"s3://{bucket}/run", interval=None)
    # As if the job was killed before its upload: a new checkpoint and an edit, never uploaded.
    (path / "ckpt-2.pt").write_bytes(b"two")
    (path / "notes.txt").write_bytes(b"v2")  # same size
    async with open_mirror() as m:
        assert await m.sync(f"s3://{bucket}/run", interval=None) == path
        assert local_tree(path) == {"ckpt-1.pt": b"one", "ckpt-2.pt": b"two", "notes.txt": b"v2"}
    assert remote_tree(s3, bucket, "run/") == {"run/ckpt-1.pt": b"one", "run/ckpt-2.pt": b"two",
                                               "run/notes.txt": b"v2"}


async def test_remote_changes_of_files_in_sync_are_pulled(open_mirror: Any, s3: Any, bucket: str) -> None:
    put(s3, bucket, {"run/a": b"a1", "run/b": b"b1", "run/gone": b"g"})
    async with open_mirror() as m:
        path = await m.sync(f"s3://{bucket}/run", interval=None)
    put(s3, bucket, {"run/a": b"a2", "run/new": b"n"})
    s3.delete_object(Bucket=bucket, Key="run/gone")
    async with open_mirror() as m:
        await m.sync(f"s3://{bucket}/run", interval=None)
        assert local_tree(path) == {"a": b"a2", "b": b"b1", "new": b"n"}


async def test_a_file_changed_on_both_sides_is_a_conflict_and_nothing_changes(
    open_mirror: Any, s3: Any, bucket: str
) -> None:
    put(s3, bucket, {"run/model.pt": b"base", "run/other": b"o1"})
    async with open_mirror() as m:
        path = await m.sync(f"s3://{bucket}/run", interval=None)
    (path / "model.pt").write_bytes(b"mine, longer")
    put(s3, bucket, {"run/model.pt": b"theirs", "run/other": b"o2"})
    async with open_mirror() as m:
        with pytest.raises(pos3.TransferError) as info:
            await m.sync(f"s3://{bucket}/run", interval=None)
    [failure] = info.value.failures
    assert failure.target == str(path / "model.pt")
    assert isinstance(failure.error, FileExistsError)
    assert "changed locally and in S3" in str(info.value) and str(path / "model.pt") in str(info.value)
    # Neither version is lost, and the refusal changed nothing else (no upload either: sync raised).
    assert local_tree(path) == {"model.pt": b"mine, longer", "other": b"o1"}
    assert remote_tree(s3, bucket, "run/") == {"run/model.pt": b"theirs", "run/other": b"o2"}


async def test_different_files_never_in_sync_are_a_conflict(
    open_mirror: Any, s3: Any, bucket: str, tmp_path: Any
) -> None:
    put(s3, bucket, {"run/a": b"remote", "run/same": b"s"})
    local = tmp_path / "job"
    local.mkdir()
    (local / "a").write_bytes(b"local!!")
    (local / "same").write_bytes(b"s")
    (local / "mine").write_bytes(b"m")
    async with open_mirror() as m:
        with pytest.raises(pos3.TransferError, match="changed locally and in S3") as info:
            await m.sync(f"s3://{bucket}/run", local=local, interval=None)
    assert [f.target for f in info.value.failures] == [str(local / "a")]
    assert local_tree(local) == {"a": b"local!!", "same": b"s", "mine": b"m"}
    assert remote_tree(s3, bucket, "run/") == {"run/a": b"remote", "run/same": b"s"}


async def test_download_still_restores_an_exact_mirror(open_mirror: Any, s3: Any, bucket: str) -> None:
    # download() (not sync) keeps its promise: the local tree becomes S3's, local edits included.
    put(s3, bucket, {"d/a": b"a1"})
    async with open_mirror() as m:
        path = await m.download(f"s3://{bucket}/d")
    (path / "a").write_bytes(b"xx")
    (path / "extra").write_bytes(b"e")
    async with open_mirror() as m:
        await m.download(f"s3://{bucket}/d")
    assert local_tree(path) == {"a": b"a1"}


async def test_plan_download_with_keep_local_shows_what_sync_would_do(
    open_mirror: Any, s3: Any, bucket: str
) -> None:
    put(s3, bucket, {"run/ckpt-1.pt": b"one", "run/model.pt": b"base"})
    async with open_mirror() as m:
        path = await m.sync(f"s3://{bucket}/run", interval=None)
    (path / "ckpt-2.pt").write_bytes(b"two")  # never uploaded
    (path / "model.pt").write_bytes(b"mine")  # changed here...
    put(s3, bucket, {"run/model.pt": b"theirs"})  # ...and there
    async with open_mirror() as m:
        plain = await m.plan_download(f"s3://{bucket}/run")
        as_sync = await m.plan_download(f"s3://{bucket}/run", keep_local=True)
    # A plain download would restore the mirror; the download of sync() loses nothing.
    assert {(a.action, a.dst) for a in plain.actions} == {
        ("copy", str(path / "model.pt")), ("delete", str(path / "ckpt-2.pt"))}
    assert {(a.action, a.dst) for a in as_sync.actions} == {
        ("keep", str(path / "ckpt-2.pt")), ("conflict", str(path / "model.pt"))}
    assert as_sync.to_copy == [] and as_sync.to_delete == []
    assert local_tree(path) == {"ckpt-1.pt": b"one", "ckpt-2.pt": b"two", "model.pt": b"mine"}
