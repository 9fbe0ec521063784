"""What a new user trips on (issue 15), and eviction during a download (issue 12, item 3).

Each test is a regression test of a behaviour seen broken; behaviour runs through both facades.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

import pos3
from pos3._cache import entries, total_bytes
from tests.conftest import CountingMotoServer, local_tree, own_buckets, put, remote_tree, wait_for

pytestmark = pytest.mark.anyio

MiB = 1 << 20


# ---------------------------------------------------------------------- 1. cache accounting


async def test_a_file_inside_a_cached_tree_is_counted_once(open_mirror: Any, s3: Any, bucket: str,
                                                            cache_root: Path) -> None:
    put(s3, bucket, {"ds/big/one.bin": b"1" * 300_000, "ds/two.bin": b"2" * 200_000,
                     "tiny/x": b"23 bytes of a prefix.."})
    async with open_mirror() as m:
        tree = await m.download(f"s3://{bucket}/ds/")
        await m.download(f"s3://{bucket}/ds/big/one.bin")
    trees = entries(cache_root)
    assert total_bytes(trees) == 500_000  # what `du -b` says, not 800 000
    # A limit above what is on disk evicts nothing, not even while a small prefix is downloaded.
    async with open_mirror(cache_max_bytes=600_000) as m:
        await m.download(f"s3://{bucket}/tiny")
    assert local_tree(tree) == {"big/one.bin": b"1" * 300_000, "two.bin": b"2" * 200_000}


# ---------------------------------------------------------------------- 2. bind mounts


@contextlib.contextmanager
def bind_mount(source: Path, target: Path) -> Iterator[None]:
    """``mount --bind source target``, or skip the test when this process may not mount."""
    source.mkdir(parents=True, exist_ok=True)
    target.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(["mount", "--bind", str(source), str(target)], capture_output=True, timeout=30,
                              check=False)
    except (FileNotFoundError, PermissionError):
        pytest.skip("no mount command: a bind mount cannot be made here")
    if done.returncode != 0:
        pytest.skip(f"mount --bind is not permitted here (needs root or CAP_SYS_ADMIN): {done.stderr!r}")
    try:
        yield
    finally:
        subprocess.run(["umount", str(target)], capture_output=True, timeout=30, check=False)


async def test_download_into_a_bind_mount_of_the_same_file_system(open_mirror: Any, s3: Any, bucket: str,
                                                                  tmp_path: Path) -> None:
    # As in a Docker or Kubernetes volume: same st_dev, and still EXDEV on rename across it.
    files = {f"ds/f{i}.bin": os.urandom(1000 + i) for i in range(5)}
    files["ds/big.bin"] = os.urandom(9 * MiB)  # a ranged, resumable download as well
    put(s3, bucket, files)
    volume = tmp_path / "mnt"
    with bind_mount(tmp_path / "disk", volume):
        async with open_mirror() as m:
            path = await m.download(f"s3://{bucket}/ds", local=volume / "data")
        assert local_tree(path) == {k.removeprefix("ds/"): v for k, v in files.items()}
        assert local_tree(tmp_path / "disk" / "data") == local_tree(path)
        assert not list(volume.rglob("*.part")) and not (volume / "data" / ".pos3-staging").exists()


# ---------------------------------------------------------------------- 3. an empty local path


async def test_an_empty_local_path_is_refused(open_mirror: Any, s3: Any, bucket: str, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    put(s3, bucket, {"ds/a.txt": b"alpha"})
    here = tmp_path / "cwd"
    here.mkdir()
    (here / "precious.txt").write_bytes(b"mine")
    monkeypatch.chdir(here)
    async with open_mirror() as m:
        for call in (lambda: m.download(f"s3://{bucket}/ds", local=""),
                     lambda: m.upload(f"s3://{bucket}/ds", local="", interval=None),
                     lambda: m.sync(f"s3://{bucket}/ds", local="", interval=None)):
            with pytest.raises(ValueError, match="local") as info:
                await call()
            assert "empty" in str(info.value)
    assert local_tree(here) == {"precious.txt": b"mine"}
    assert remote_tree(s3, bucket) == {"ds/a.txt": b"alpha"}


# ---------------------------------------------------------------------- 4. a file to a URL ending in "/"


async def test_a_file_uploaded_to_a_folder_url_keeps_its_name(open_mirror: Any, s3: Any, bucket: str,
                                                               tmp_path: Path) -> None:
    afile = tmp_path / "afile.txt"
    afile.write_bytes(b"payload")
    async with open_mirror() as m:
        await m.upload(f"s3://{bucket}/ds-file/", local=afile, interval=None)
    assert remote_tree(s3, bucket) == {"ds-file/afile.txt": b"payload"}  # as `aws s3 cp afile s3://b/ds-file/`
    async with open_mirror() as m:
        assert await m.ls(f"s3://{bucket}/ds-file/") == [f"s3://{bucket}/ds-file/afile.txt"]
        back = await m.download(f"s3://{bucket}/ds-file/", local=tmp_path / "back")
    assert local_tree(back) == {"afile.txt": b"payload"}


# ---------------------------------------------------------------------- 5. trio


def test_trio_is_refused_at_once_with_one_line(server: CountingMotoServer, bucket: str, cache_root: Path) -> None:
    script = textwrap.dedent(f"""
        import anyio, pos3

        async def main():
            async with pos3.amirror(cache_root={str(cache_root)!r}, show_progress=False) as m:
                await m.download("s3://{bucket}/x")

        try:
            anyio.run(main, backend="trio")
        except pos3.AsyncioRequiredError as exc:
            assert isinstance(exc, RuntimeError)
            print("refused:", exc)
    """)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stderr
    line = res.stdout.strip()
    assert line.startswith("refused: ") and "\n" not in line and "asyncio" in line and "trio" in line


# ---------------------------------------------------------------------- issue 12, item 3: eviction vs a download


async def test_eviction_never_deletes_a_tree_being_downloaded(s3: Any, bucket: str, cache_root: Path) -> None:
    """r5: a second mirror's cache limit must not evict a tree that the first is refreshing."""
    put(s3, bucket, {f"t/old{i}.bin": b"o" * 100_000 for i in range(5)})
    put(s3, bucket, {"u/one.bin": b"u" * 1_000_000})
    async with pos3.amirror(cache_root=cache_root, show_progress=False) as m0:
        tree = await m0.download(f"s3://{bucket}/t")  # cached yesterday, least recently used
    put(s3, bucket, {f"t/new{i:03}.bin": b"n" * 100_000 for i in range(40)})  # the dataset grew since
    expected = {k.removeprefix("t/"): v for k, v in remote_tree(s3, bucket, "t/").items()}
    async with pos3.amirror(cache_root=cache_root, show_progress=False, max_workers=1) as a, \
            pos3.amirror(cache_root=cache_root, show_progress=False, cache_max_bytes=1_200_000) as b:
        result: dict[str, Path] = {}

        async def refresh() -> None:
            result["t"] = await a.download(f"s3://{bucket}/t")

        async with anyio.create_task_group() as tg:
            tg.start_soon(refresh)
            # Bounded wait until A has placed a new file: its download is under way.
            await wait_for(lambda: any(p.name.startswith("new") for p in tree.glob("*")) or "t" in result)
            await b.download(f"s3://{bucket}/u")  # its cache limit would evict T, least recently used
        assert result["t"] == tree
        assert local_tree(tree) == expected  # A's tree is whole: nothing was evicted under it
    async with pos3.amirror(cache_root=cache_root, show_progress=False) as m3:
        plan = await m3.plan_download(f"s3://{bucket}/t")
    assert plan.to_copy == []


# ---------------------------------------------------------------------- errors a new user reads


async def test_an_upload_to_a_missing_bucket_fails_when_registered(open_mirror: Any, server: CountingMotoServer,
                                                                   tmp_path: Path) -> None:
    missing = f"nosuchbucket-{uuid.uuid4().hex[:8]}"
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_bytes(b"a")
    async with open_mirror() as m:
        with pytest.raises(pos3.NotFoundError) as info:
            await m.upload(f"s3://{missing}/x/", local=src, interval=None)
    text = str(info.value)
    assert text.count(f"s3://{missing}") == 1 and "bucket does not exist" in text
    assert "_MissingTransferError" not in repr(type(info.value))


def test_errors_show_public_names_and_short_tracebacks(server: CountingMotoServer, bucket: str,
                                                       cache_root: Path) -> None:
    script = textwrap.dedent(f"""
        import pos3
        with pos3.mirror(cache_root={str(cache_root)!r}, show_progress=False):
            pos3.download("s3://nosuchbucket-{uuid.uuid4().hex[:8]}/x/")
    """)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 1
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("pos3.NotFoundError: s3://nosuchbucket-") and "bucket does not exist" in last
    assert last.count("s3://") == 1
    assert "botocore" not in res.stderr and "During handling" not in res.stderr  # raised from None


async def test_a_read_only_target_fails_once_before_downloading(open_mirror: Any, s3: Any, bucket: str,
                                                                 tmp_path: Path, server: CountingMotoServer) -> None:
    put(s3, bucket, {f"ds/f{i}": b"x" * 100 for i in range(30)})
    target = tmp_path / "ro"
    target.mkdir()
    if os.geteuid() == 0:  # root writes through permissions: make a read-only mount instead
        ctx: contextlib.AbstractContextManager[None] = read_only_mount(tmp_path / "disk", target)
    else:
        target.chmod(0o555)
        ctx = contextlib.nullcontext()
    with ctx:
        server.log.clear()
        async with open_mirror() as m:
            with pytest.raises(PermissionError) as info:
                await m.download(f"s3://{bucket}/ds", local=target / "data")
        assert str(target) in str(info.value) and not isinstance(info.value, pos3.TransferError)
        assert server.log.count("GET", None) - server.log.count("GET", "list-type") == 0  # no object fetched
    target.chmod(0o755)


@contextlib.contextmanager
def read_only_mount(source: Path, target: Path) -> Iterator[None]:
    with bind_mount(source, target):
        done = subprocess.run(["mount", "-o", "remount,bind,ro", str(target)], capture_output=True, timeout=30,
                              check=False)
        if done.returncode != 0:
            pytest.skip(f"a read-only remount is not permitted here: {done.stderr!r}")
        yield


async def test_ls_of_s3_lists_the_buckets(open_mirror: Any, server: Any, s3: Any, bucket: str) -> None:
    s3.create_bucket(Bucket=f"{bucket}-two")
    async with open_mirror() as m:
        assert own_buckets(await m.ls("s3://"), bucket, server) == [f"s3://{bucket}", f"s3://{bucket}-two"]
