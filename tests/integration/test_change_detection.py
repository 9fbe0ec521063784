"""Change detection: ETags, fingerprints and the state store (issue: know exactly what changed)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import xxhash

import pos3
from tests.conftest import CountingMotoServer, local_tree, put, remote_tree

pytestmark = pytest.mark.anyio


def object_gets(server: CountingMotoServer) -> int:
    return sum(1 for m, _, q in server.log.requests if m == "GET" and "list-type" not in q)


async def test_same_size_remote_rewrite_is_fetched(
    open_mirror: Any, s3: Any, bucket: str, server: CountingMotoServer
) -> None:
    put(s3, bucket, {"d/labels.csv": b"cat,1\n"})
    async with open_mirror() as m:
        path = await m.download(f"s3://{bucket}/d")
    put(s3, bucket, {"d/labels.csv": b"dog,1\n"})  # same size, new ETag
    async with open_mirror() as m:
        plan = await m.plan_download(f"s3://{bucket}/d")
        assert [a.reason for a in plan.actions] == ["changed remotely"]
        await m.download(f"s3://{bucket}/d")
    assert (path / "labels.csv").read_bytes() == b"dog,1\n"


async def test_local_edit_is_restored_and_touch_is_free(
    open_mirror: Any, s3: Any, bucket: str, server: CountingMotoServer
) -> None:
    put(s3, bucket, {"d/a.txt": b"original", "d/b.txt": b"bbbbbbbb"})
    async with open_mirror() as m:
        path = await m.download(f"s3://{bucket}/d")
    (path / "a.txt").write_bytes(b"EDITED!!")  # same size, new content
    os.utime(path / "b.txt", ns=(1, 1))  # touched only
    server.log.clear()
    async with open_mirror() as m:
        plan = await m.plan_download(f"s3://{bucket}/d")
        assert [(Path(a.dst).name, a.reason) for a in plan.actions] == [("a.txt", "changed locally")]
        await m.download(f"s3://{bucket}/d")
    assert local_tree(path) == {"a.txt": b"original", "b.txt": b"bbbbbbbb"}
    assert object_gets(server) == 1


async def test_uploads_store_fingerprint_and_skip_touched_files(
    open_mirror: Any, s3: Any, bucket: str, server: CountingMotoServer, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "model.bin").write_bytes(b"weights-1")
    (src / "notes.txt").write_bytes(b"same size")
    async with open_mirror() as m:
        await m.upload(f"s3://{bucket}/out", local=src, interval=None)
    head = s3.head_object(Bucket=bucket, Key="out/model.bin")
    assert head["Metadata"]["pos3-xxh3"] == xxhash.xxh3_128_hexdigest(b"weights-1")

    os.utime(src / "model.bin", ns=(5, 5))  # touch: new mtime, same bytes
    (src / "notes.txt").write_bytes(b"SAME SIZE")  # same-size edit
    server.log.clear()
    async with open_mirror() as m:
        plan = await m.plan_upload(f"s3://{bucket}/out", local=src)
        assert [(a.dst, a.reason) for a in plan.actions] == [(f"s3://{bucket}/out/notes.txt", "changed locally")]
        await m.upload(f"s3://{bucket}/out", local=src, interval=None)
    assert server.log.count("PUT") == 1
    assert remote_tree(s3, bucket, "out/") == {"out/model.bin": b"weights-1", "out/notes.txt": b"SAME SIZE"}


async def test_reasons_new_and_missing(open_mirror: Any, s3: Any, bucket: str) -> None:
    put(s3, bucket, {"d/a": b"a"})
    async with open_mirror() as m:
        path = await m.download(f"s3://{bucket}/d")
    (path / "a").unlink()
    put(s3, bucket, {"d/b": b"b"})
    async with open_mirror() as m:
        plan = await m.plan_download(f"s3://{bucket}/d")
    assert sorted((Path(a.dst).name, a.reason) for a in plan.actions) == [("a", "missing"), ("b", "new")]


async def test_tree_from_another_tool_is_adopted_by_content(
    open_mirror: Any, s3: Any, bucket: str, server: CountingMotoServer, tmp_path: Path
) -> None:
    put(s3, bucket, {"d/same": b"identical", "d/diff": b"remote!!", "d/size": b"short"})
    local = tmp_path / "l"
    local.mkdir()
    (local / "same").write_bytes(b"identical")
    (local / "diff").write_bytes(b"local!!!")  # same size, other bytes
    (local / "size").write_bytes(b"longer content")
    server.log.clear()
    async with open_mirror() as m:
        await m.download(f"s3://{bucket}/d", local=local)
    assert local_tree(local) == {"same": b"identical", "diff": b"remote!!", "size": b"short"}
    assert object_gets(server) == 2  # "same" was proven identical by its MD5 ETag, not fetched
    server.log.clear()
    async with open_mirror() as m:
        await m.download(f"s3://{bucket}/d", local=local)
    assert object_gets(server) == 0


async def test_multipart_style_etag_uses_pos3_metadata(
    open_mirror: Any, s3: Any, bucket: str, server: CountingMotoServer, tmp_path: Path
) -> None:
    # Uploaded by pos3 (fingerprint in metadata), then the local state is lost.
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"content")
    async with open_mirror() as m:
        await m.upload(f"s3://{bucket}/u", local=src, interval=None)
    dst = tmp_path / "dst"
    dst.mkdir()
    (dst / "f").write_bytes(b"content")
    async with open_mirror(cache_root=tmp_path / "other-cache") as m:
        await m.download(f"s3://{bucket}/u", local=dst)
    assert (dst / "f").read_bytes() == b"content"


async def test_wiped_and_corrupted_state_store_recover(
    open_mirror: Any, s3: Any, bucket: str, cache_root: Path, server: CountingMotoServer
) -> None:
    put(s3, bucket, {f"d/{i}": f"v{i}".encode() for i in range(5)})
    async with open_mirror() as m:
        path = await m.download(f"s3://{bucket}/d")
    state = cache_root / ".pos3" / "state.db"
    for suffix in ("", "-wal", "-shm"):
        Path(str(state) + suffix).unlink(missing_ok=True)
    put(s3, bucket, {"d/0": b"w0"})  # same size: decided on content
    async with open_mirror() as m:
        await m.download(f"s3://{bucket}/d")
    assert (path / "0").read_bytes() == b"w0"

    state.write_bytes(b"this is not a sqlite database" * 100)
    put(s3, bucket, {"d/1": b"w1"})
    async with open_mirror() as m:
        await m.download(f"s3://{bucket}/d")
    assert local_tree(path) == {"0": b"w0", "1": b"w1", "2": b"v2", "3": b"v3", "4": b"v4"}
    server.log.clear()
    async with open_mirror() as m:  # and the rebuilt store is used again
        await m.download(f"s3://{bucket}/d")
    assert object_gets(server) == 0


async def test_checksum_mismatch_raises_and_places_nothing(open_mirror: Any, s3: Any, bucket: str, tmp_path: Path
                                                            ) -> None:
    s3.put_object(Bucket=bucket, Key="d/bad", Body=b"real bytes", Metadata={"pos3-xxh3": "0" * 32})
    put(s3, bucket, {"d/good": b"fine"})
    local = tmp_path / "l"
    async with open_mirror() as m:
        with pytest.raises(pos3.TransferError) as info:
            await m.download(f"s3://{bucket}/d", local=local)
    assert [f.target for f in info.value.failures] == [f"s3://{bucket}/d/bad"]
    assert isinstance(info.value.failures[0].error, pos3.IntegrityError)
    assert local_tree(local) == {"good": b"fine"}


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_noop_resync_of_100_objects_costs_only_lists(
    s3: Any, bucket: str, server: CountingMotoServer, tmp_path: Path, cache_root: Path
) -> None:
    # A cost test, run once (through amirror): the rules it counts are the facades' shared core.
    def open_mirror(**kwargs: Any) -> pos3.AsyncMirror:
        return pos3.amirror(cache_root=cache_root, show_progress=False, **kwargs)

    src = tmp_path / "src"
    # 100 objects: any per-object request (HEAD, GET, PUT) would show 100 times, twenty times the
    # few LISTs allowed; listing past 1000 keys is covered by test_audit's 1001-object test.
    for i in range(4):
        (src / f"dir{i:02}").mkdir(parents=True)
        for j in range(25):
            (src / f"dir{i:02}" / f"f{j:03}").write_bytes(b"%d-%d" % (i, j))
    async with open_mirror(max_workers=16) as m:
        await m.upload(f"s3://{bucket}/big", local=src, interval=None)
    async with open_mirror(max_workers=16) as m:
        dst = await m.download(f"s3://{bucket}/big", local=tmp_path / "dst")
    assert len(local_tree(dst)) == 100
    server.log.clear()
    async with open_mirror() as m:
        await m.upload(f"s3://{bucket}/big", local=src, interval=None)
    assert server.log.count() <= 5
    server.log.clear()
    async with open_mirror() as m:
        await m.download(f"s3://{bucket}/big", local=tmp_path / "dst")
    assert server.log.count() <= 5


@pytest.mark.slow
def test_two_processes_on_one_root_end_with_a_correct_mirror(
    s3: Any, bucket: str, cache_root: Path, tmp_path: Path
) -> None:
    put(s3, bucket, {f"d/f{i:03}": os.urandom(2048) for i in range(200)})
    script = textwrap.dedent(f"""
        import pos3
        with pos3.mirror(cache_root={str(cache_root)!r}, show_progress=False):
            pos3.download("s3://{bucket}/d")
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script]) for _ in range(2)]
    codes = [p.wait(timeout=90) for p in procs]
    assert codes == [0, 0]
    path = cache_root / "_" / bucket / "d"
    expected = {k.removeprefix("d/"): v for k, v in remote_tree(s3, bucket, "d/").items()}
    assert local_tree(path) == expected
    assert not list((cache_root / ".pos3" / "staging").rglob("*.part"))
