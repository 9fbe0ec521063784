"""Behaviour of the mirror lifecycle, through both facades (issue: the mirror engine)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

import pos3
from tests.conftest import CountingMotoServer, local_tree, put, remote_tree, wait_for

pytestmark = pytest.mark.anyio


async def test_local_path_is_passed_through(open_mirror: Any, tmp_path: Path) -> None:
    existing = tmp_path / "data"
    existing.mkdir()
    async with open_mirror() as m:
        assert await m.download(str(existing)) == existing
        created = await m.upload(str(tmp_path / "out" / "nested"))
        assert created == tmp_path / "out" / "nested"
        assert created.is_dir()
        assert await m.sync(str(existing)) == existing


async def test_repeated_registration_transfers_once(
    open_mirror: Any, s3: Any, bucket: str, server: CountingMotoServer
) -> None:
    put(s3, bucket, {"d/a": b"1", "d/b": b"2"})
    async with open_mirror() as m:
        first = await m.download(f"s3://{bucket}/d")
        gets = server.log.count("GET")
        again = await m.download(f"s3://{bucket}/d")
        assert again == first
        assert server.log.count("GET") == gets  # no listing, no object request

        out = await m.upload(f"s3://{bucket}/out", interval=None)
        assert await m.upload(f"s3://{bucket}/out", interval=None) == out


async def test_conflicting_registrations_raise(open_mirror: Any, s3: Any, bucket: str) -> None:
    put(s3, bucket, {"d/a": b"1", "d/sub/b": b"2"})
    async with open_mirror() as m:
        await m.download(f"s3://{bucket}/d")
        with pytest.raises(ValueError, match="different parameters"):
            await m.download(f"s3://{bucket}/d", delete=False)
        for overlapping in (f"s3://{bucket}/d", f"s3://{bucket}/d/sub", f"s3://{bucket}"):
            with pytest.raises(ValueError, match="overlaps"):
                await m.upload(overlapping, interval=None)
        await m.upload(f"s3://{bucket}/d_v2", interval=None)  # a sibling, not a child
        with pytest.raises(ValueError, match="different parameters"):
            await m.upload(f"s3://{bucket}/d_v2", interval=5)


async def test_prefix_never_matches_sibling_and_single_object_is_a_file(
    open_mirror: Any, s3: Any, bucket: str
) -> None:
    put(s3, bucket, {"data/a": b"a", "data_v2/b": b"b", "model.pt": b"weights"})
    async with open_mirror() as m:
        data = await m.download(f"s3://{bucket}/data")
        assert local_tree(data) == {"a": b"a"}
        model = await m.download(f"s3://{bucket}/model.pt")
        assert model.is_file()
        assert model.read_bytes() == b"weights"
        slash = await m.download(f"s3://{bucket}/data_v2/", local=data.parent / "v2")
        assert local_tree(slash) == {"b": b"b"}


async def test_delete_and_exclude_on_download(open_mirror: Any, s3: Any, bucket: str, tmp_path: Path) -> None:
    put(s3, bucket, {"d/keep.txt": b"k", "d/skip.tmp": b"s", "d/logs/x.txt": b"x", "d/sub/y.txt": b"y"})
    local = tmp_path / "local"
    (local / "logs").mkdir(parents=True)
    (local / "stale.txt").write_bytes(b"old")
    (local / "logs" / "mine.txt").write_bytes(b"mine")
    (local / "local.tmp").write_bytes(b"mine too")
    async with open_mirror() as m:
        await m.download(f"s3://{bucket}/d", local=local, exclude=["*.tmp", "logs"])
    assert local_tree(local) == {
        "keep.txt": b"k",
        "sub/y.txt": b"y",
        "logs/mine.txt": b"mine",  # excluded folder: untouched, not deleted, not filled
        "local.tmp": b"mine too",  # excluded file: untouched
    }


async def test_download_without_delete_keeps_extras(open_mirror: Any, s3: Any, bucket: str, tmp_path: Path) -> None:
    put(s3, bucket, {"d/a": b"a"})
    local = tmp_path / "l"
    local.mkdir()
    (local / "extra").write_bytes(b"e")
    async with open_mirror() as m:
        await m.download(f"s3://{bucket}/d", local=local, delete=False)
    assert local_tree(local) == {"a": b"a", "extra": b"e"}


async def test_upload_delete_and_exclude(open_mirror: Any, s3: Any, bucket: str, tmp_path: Path) -> None:
    put(s3, bucket, {"out/old.txt": b"o", "out/cache/c.bin": b"c", "out/x.tmp": b"t"})
    local = tmp_path / "out"
    (local / "cache").mkdir(parents=True)
    (local / "cache" / "local.bin").write_bytes(b"never sent")
    (local / "new.txt").write_bytes(b"n")
    (local / "y.tmp").write_bytes(b"never sent")
    async with open_mirror() as m:
        await m.upload(f"s3://{bucket}/out", local=local, interval=None, exclude=["cache", "*.tmp"])
    assert remote_tree(s3, bucket, "out/") == {
        "out/new.txt": b"n",
        "out/cache/c.bin": b"c",  # excluded on both sides: neither sent nor deleted
        "out/x.tmp": b"t",
    }


async def test_markers_empty_dirs_and_empty_files_round_trip(
    open_mirror: Any, s3: Any, bucket: str, tmp_path: Path
) -> None:
    put(s3, bucket, {"d/empty/": b"", "d/f/zero": b"", "d/f/one": b"1"})
    async with open_mirror() as m:
        local = await m.download(f"s3://{bucket}/d")
        assert (local / "empty").is_dir()
        assert (local / "f" / "zero").read_bytes() == b""
        src = tmp_path / "src"
        (src / "hollow" / "deeper").mkdir(parents=True)
        (src / "z").write_bytes(b"")
        await m.upload(f"s3://{bucket}/up", local=src, interval=None)
    assert remote_tree(s3, bucket, "up/") == {"up/hollow/deeper/": b"", "up/z": b""}
    async with open_mirror() as m:
        back = await m.download(f"s3://{bucket}/up", local=tmp_path / "back")
    assert (back / "hollow" / "deeper").is_dir()
    assert (back / "z").read_bytes() == b""


async def test_background_upload_every_interval(open_mirror: Any, s3: Any, bucket: str) -> None:
    async with open_mirror() as m:
        out = await m.upload(f"s3://{bucket}/bg", interval=0.2)
        (out / "one.txt").write_bytes(b"1")
        await wait_for(lambda: "bg/one.txt" in remote_tree(s3, bucket, "bg/"))
        (out / "two.txt").write_bytes(b"2")
        await wait_for(lambda: "bg/two.txt" in remote_tree(s3, bucket, "bg/"))


async def test_exit_with_error_syncs_only_sync_on_error(open_mirror: Any, s3: Any, bucket: str) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with open_mirror() as m:
            a = await m.upload(f"s3://{bucket}/a", interval=None, sync_on_error=True)
            b = await m.upload(f"s3://{bucket}/b", interval=None)
            (a / "x").write_bytes(b"a")
            (b / "x").write_bytes(b"b")
            raise Boom
    assert remote_tree(s3, bucket) == {"a/x": b"a"}


async def test_final_sync_failure_raises_transfer_error(open_mirror: Any, s3: Any, bucket: str) -> None:
    with pytest.raises(pos3.TransferError) as info:
        async with open_mirror() as m:
            out = await m.upload(f"s3://{bucket}/o", interval=None)
            (out / "f").write_bytes(b"1")
            s3.delete_bucket(Bucket=bucket)
    assert info.value.operation == "upload"
    assert bucket in str(info.value)


async def test_failing_background_sync_is_retried(open_mirror: Any, s3: Any, bucket: str) -> None:
    async with open_mirror() as m:
        out = await m.upload(f"s3://{bucket}/bg", interval=0.2)
        s3.delete_bucket(Bucket=bucket)
        (out / "f").write_bytes(b"1")
        await anyio_sleep(0.5)  # at least one background sync fails meanwhile
        s3.create_bucket(Bucket=bucket)
        await wait_for(lambda: "bg/f" in remote_tree(s3, bucket, "bg/"))


async def anyio_sleep(seconds: float) -> None:
    import anyio

    await anyio.sleep(seconds)


async def test_rate_limit_caps_total_upload_rate(open_mirror: Any, s3: Any, bucket: str) -> None:
    import time

    async with open_mirror(max_upload_bytes_per_second=200_000, max_workers=8) as m:
        out = await m.upload(f"s3://{bucket}/r", interval=None)
        for i in range(8):
            (out / f"f{i}").write_bytes(os.urandom(50_000))
        start = time.monotonic()
    elapsed = time.monotonic() - start
    # 400 kB at 200 kB/s with a one-second burst: the cap forces at least ~1 s, whatever the workers.
    assert elapsed >= 0.9
    assert len(remote_tree(s3, bucket, "r/")) == 8


async def test_progress_goes_to_stderr_only_when_asked(
    open_mirror: Any, s3: Any, bucket: str, capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    put(s3, bucket, {"p/a": b"x" * 5000})
    async with open_mirror(show_progress=False) as m:
        await m.download(f"s3://{bucket}/p")
    quiet = capfd.readouterr()
    assert quiet.out == ""
    assert "download" not in quiet.err
    # Asked for, but stderr is not a terminal (a log file, CI): the library draws no bars.
    async with open_mirror(show_progress=True) as m:
        await m.download(f"s3://{bucket}/p", local=tmp_path / "shown")
    piped = capfd.readouterr()
    assert piped.out == "" and piped.err == ""


async def test_unsafe_keys_are_refused(open_mirror: Any, s3: Any, bucket: str, tmp_path: Path) -> None:
    put(s3, bucket, {"data/ok.txt": b"ok", "data/../../escape.txt": b"evil"})
    root = tmp_path / "root"
    async with open_mirror() as m:
        with pytest.raises(pos3.UnsafeKeyError, match="escape"):
            await m.plan_download(f"s3://{bucket}/data", local=root)
        with pytest.raises(ValueError, match="escape"):
            await m.download(f"s3://{bucket}/data", local=root)
    assert not (tmp_path / "escape.txt").exists()
    assert not list(tmp_path.rglob("escape.txt"))


async def test_colliding_keys_are_reported(open_mirror: Any, s3: Any, bucket: str, tmp_path: Path) -> None:
    put(s3, bucket, {"c/a//b": b"1", "c/a/b": b"2"})
    async with open_mirror() as m:
        with pytest.raises(pos3.UnsafeKeyError, match="both map"):
            await m.download(f"s3://{bucket}/c", local=tmp_path / "c")


@pytest.mark.parametrize("bad", ["s3:/x", "s3://", "s3:///key", "http://example.com/x", "s3://@b/k"])
async def test_malformed_urls_raise(open_mirror: Any, bad: str, cache_root: Path) -> None:
    async with open_mirror() as m:
        with pytest.raises(ValueError) as info:
            await m.download(bad)
        assert repr(bad)[1:-1] in str(info.value) or bad in str(info.value)
        with pytest.raises(ValueError):
            await m.upload(bad)
    assert not any(p.name in ("x", "key") for p in cache_root.rglob("*"))


async def test_missing_bucket_is_clear_and_leaves_nothing(open_mirror: Any, server: Any, cache_root: Path) -> None:
    async with open_mirror() as m:
        with pytest.raises(FileNotFoundError, match=r"no-such-bucket-x.*bucket does not exist"):
            await m.download("s3://no-such-bucket-x/data")
    assert not (cache_root / "_").exists()


async def test_unreachable_endpoint_fails_promptly(open_mirror: Any, cache_root: Path) -> None:
    dead = pos3.Profile(local_name="dead", endpoint="http://127.0.0.1:9", access_key="a", secret_key="s")
    # Refused connections are retried for the outage budget (default 60 s); 2 s shows the same end.
    async with open_mirror(max_attempts=1, connect_timeout=2, outage_budget=2.0) as m:
        with pytest.raises(ConnectionError, match="s3://b/k"):
            await m.download("s3://b/k", profile=dead)
    assert not (cache_root / "dead").exists()


async def test_empty_prefix_download_raises_but_sync_works(open_mirror: Any, bucket: str) -> None:
    async with open_mirror() as m:
        with pytest.raises(FileNotFoundError, match=f"s3://{bucket}/nothing"):
            await m.download(f"s3://{bucket}/nothing")
        path = await m.sync(f"s3://{bucket}/first-run", interval=None)
        assert path.is_dir()
        (path / "ckpt").write_bytes(b"c")


async def test_remote_folder_replaces_local_file_and_reverse(
    open_mirror: Any, s3: Any, bucket: str, tmp_path: Path
) -> None:
    local = tmp_path / "l"
    (local / "was_dir").mkdir(parents=True)
    (local / "was_dir" / "inner").write_bytes(b"i")
    (local / "was_file").write_bytes(b"f")
    put(s3, bucket, {"d/was_dir": b"now a file", "d/was_file/inner": b"now in a folder"})
    async with open_mirror() as m:
        await m.download(f"s3://{bucket}/d", local=local)
    assert local_tree(local) == {"was_dir": b"now a file", "was_file/inner": b"now in a folder"}


async def test_temporary_files_never_show_and_leftovers_are_cleaned(
    open_mirror: Any, s3: Any, bucket: str, cache_root: Path
) -> None:
    put(s3, bucket, {"t/a": b"a" * 10})
    async with open_mirror() as m:
        path = await m.download(f"s3://{bucket}/t")
    staging = cache_root / ".pos3" / "staging"
    leftovers = list(staging.rglob("*.part"))
    assert leftovers == []
    # Simulate a killed run: a partial file in this root's staging folder.
    folder = next(p for p in staging.iterdir() if p.is_dir())
    (folder / "dead.part").write_bytes(b"partial")
    put(s3, bucket, {"t/b": b"b"})
    async with open_mirror() as m:
        await m.download(f"s3://{bucket}/t")
    assert not (folder / "dead.part").exists()
    assert sorted(os.listdir(path)) == ["a", "b"]


async def test_transfer_error_names_every_failed_key(open_mirror: Any, s3: Any, bucket: str, tmp_path: Path) -> None:
    put(s3, bucket, {f"d/f{i}": b"x" for i in range(3)} | {"d/ok": b"ok"})
    local = tmp_path / "l"
    for i in range(3):
        (local / f"f{i}").mkdir(parents=True)  # a non-empty folder where each file goes...
        (local / f"f{i}" / "mine").write_bytes(b"m")
    async with open_mirror() as m:
        # ...excluded content inside makes the folder impossible to clear: those three fail.
        with pytest.raises(pos3.TransferError) as info:
            await m.download(f"s3://{bucket}/d", local=local, exclude=["mine"])
    assert {f.target.rsplit("/", 1)[-1] for f in info.value.failures} == {"f0", "f1", "f2"}
    assert (local / "ok").read_bytes() == b"ok"


async def test_outside_any_mirror_module_functions_raise() -> None:
    with pytest.raises(RuntimeError, match=r"inside 'with pos3\.mirror"):
        pos3.download("s3://b/k")
