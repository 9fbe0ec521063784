"""Audit of the issue texts (engine, change detection, training jobs) against the public API.

Each test reads one requirement the way a user of the issue text would call it: the argument
names and defaults it spells, the exception types it promises, the default cache layout. Tests
run against the real moto server, through both facades where the behaviour is shared.
"""

from __future__ import annotations

import concurrent.futures
import inspect
import io
import os
from pathlib import Path
from typing import Any

import anyio
import pytest

import pos3
from tests.conftest import CountingMotoServer, local_tree, put, put_many, remote_tree, wait_for

pytestmark = pytest.mark.anyio


# ---------------------------------------------------------------------------- public surface


def _params(fn: Any) -> list[tuple[str, Any]]:
    sig = inspect.signature(fn)
    return [
        (p.name, p.default) for p in sig.parameters.values()
        if p.name != "self" and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]


_E = inspect.Parameter.empty

SIGNATURES: dict[str, list[tuple[str, Any]]] = {
    "download": [("remote", _E), ("local", None), ("delete", True), ("exclude", None), ("profile", None)],
    "upload": [("remote", _E), ("local", None), ("interval", 300), ("delete", True), ("sync_on_error", False),
               ("exclude", None), ("profile", None)],
    "sync": [("remote", _E), ("local", None), ("interval", 300), ("delete_local", True), ("delete_remote", True),
             ("sync_on_error", False), ("exclude", None), ("profile", None)],
    "ls": [("prefix", _E), ("recursive", False), ("profile", None)],
}


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_module_and_async_signatures_follow_the_issue(name: str) -> None:
    assert _params(getattr(pos3, name)) == SIGNATURES[name]
    assert _params(getattr(pos3.AsyncMirror, name)) == SIGNATURES[name]
    assert inspect.iscoroutinefunction(getattr(pos3.AsyncMirror, name))


def test_plan_functions_take_the_download_and_upload_arguments() -> None:
    expected = [("remote", _E), ("local", None), ("delete", True), ("exclude", None), ("profile", None)]
    for name in ("plan_download", "plan_upload"):
        assert _params(getattr(pos3, name)) == expected
        assert _params(getattr(pos3.AsyncMirror, name)) == expected
        assert inspect.iscoroutinefunction(getattr(pos3.AsyncMirror, name))


def test_mirror_signature_and_defaults() -> None:
    for fn in (pos3.mirror, pos3.amirror):
        params = dict(_params(fn))
        assert list(params)[:5] == ["cache_root", "show_progress", "max_workers", "default_profile",
                                    "max_upload_bytes_per_second"]
        assert params["show_progress"] is True
        assert params["default_profile"] is None
        assert params["max_upload_bytes_per_second"] is None
        assert params["max_workers"] is None  # chosen per transfer (issue 16); pos3 0.4.0 had 10


def test_every_module_function_outside_a_mirror_raises_runtime_error_naming_the_fix() -> None:
    calls = [
        lambda: pos3.download("s3://b/k"),
        lambda: pos3.upload("s3://b/k"),
        lambda: pos3.sync("s3://b/k"),
        lambda: pos3.ls("s3://b/k"),
        lambda: pos3.plan_download("s3://b/k"),
        lambda: pos3.plan_upload("s3://b/k"),
    ]
    for call in calls:
        with pytest.raises(RuntimeError, match=r"pos3\.mirror\(\)"):
            call()


def test_transfer_error_carries_operation_and_every_failure() -> None:
    failures = [pos3.Failure(f"s3://b/k{i}", OSError("boom")) for i in range(7)]
    err = pos3.TransferError("download", failures)
    assert isinstance(err, RuntimeError) and isinstance(err, Exception)
    assert err.operation == "download"
    assert len(err.failures) == 7
    assert "s3://b/k0" in str(err) and "7" in str(err)


# ---------------------------------------------------------------------------- facade only


def test_bare_with_mirror_decorator_and_arguments(s3: Any, bucket: str, cache_root: Path, monkeypatch: Any) -> None:
    put(s3, bucket, {"d/a": b"1"})
    monkeypatch.setenv("POS3_CACHE_ROOT", str(cache_root))

    @pos3.with_mirror
    def bare() -> Path:
        return pos3.download(f"s3://{bucket}/d")

    @pos3.with_mirror(show_progress=False)
    def called() -> Path:
        return pos3.download(f"s3://{bucket}/d")

    assert bare() == cache_root / "_" / bucket / "d"
    assert called() == bare()
    assert local_tree(bare()) == {"a": b"1"}
    with pytest.raises(RuntimeError):
        pos3.download(f"s3://{bucket}/d")


def test_pos3_cache_root_env_and_argument(s3: Any, bucket: str, tmp_path: Path, monkeypatch: Any) -> None:
    put(s3, bucket, {"dir/key.txt": b"k"})
    env_root = tmp_path / "env-root"
    monkeypatch.setenv("POS3_CACHE_ROOT", str(env_root))
    with pos3.mirror(show_progress=False):
        got = pos3.download(f"s3://{bucket}/dir/key.txt")
    assert got == env_root / "_" / bucket / "dir" / "key.txt"
    assert got.read_bytes() == b"k"
    arg_root = tmp_path / "arg-root"
    with pos3.mirror(cache_root=str(arg_root), show_progress=False):  # the argument wins over the env
        assert pos3.download(f"s3://{bucket}/dir") == arg_root / "_" / bucket / "dir"
    assert (arg_root / "_" / bucket / "dir" / "key.txt").read_bytes() == b"k"


def test_default_cache_root_is_home_cache_pos3(s3: Any, bucket: str, tmp_path: Path, monkeypatch: Any) -> None:
    put(s3, bucket, {"d/a": b"1"})
    monkeypatch.delenv("POS3_CACHE_ROOT", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pos3.mirror(show_progress=False):
        got = pos3.download(f"s3://{bucket}/d")
    assert got == (tmp_path / "home" / ".cache" / "pos3" / "_" / bucket / "d")
    assert local_tree(got) == {"a": b"1"}


def test_calls_from_a_thread_pool_inside_mirror(s3: Any, bucket: str, cache_root: Path,
                                                server: CountingMotoServer) -> None:
    put(s3, bucket, {f"p{i}/f": bytes([i]) * 10 for i in range(6)})
    with pos3.mirror(cache_root=cache_root, show_progress=False):
        server.log.clear()
        urls = [f"s3://{bucket}/p{i % 6}" for i in range(18)]  # each prefix three times, at once
        with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
            paths = list(pool.map(pos3.download, urls))
        out = pos3.upload(f"s3://{bucket}/out", interval=None)
        (out / "n").write_bytes(str(len(set(paths))).encode())
    assert len(set(paths)) == 6
    for i, p in enumerate(paths):
        assert local_tree(p) == {"f": bytes([i % 6]) * 10}
    object_gets = [r for r in server.log.requests if r[0] == "GET" and r[1].endswith("/f")]
    assert len(object_gets) == 6  # each object once, whatever the concurrency
    assert remote_tree(s3, bucket, "out/") == {"out/n": b"6"}


def test_module_functions_return_plain_paths_and_lists(s3: Any, bucket: str, cache_root: Path) -> None:
    put(s3, bucket, {"d/a": b"1"})
    with pos3.mirror(cache_root=cache_root, show_progress=False):
        assert type(pos3.download(f"s3://{bucket}/d")) in (type(Path()),)
        assert isinstance(pos3.upload(f"s3://{bucket}/o", interval=None), Path)
        assert isinstance(pos3.sync(f"s3://{bucket}/s", interval=None), Path)
        listed = pos3.ls(f"s3://{bucket}/d")
        assert isinstance(listed, list) and all(type(x) is str for x in listed)
        plan = pos3.plan_download(f"s3://{bucket}/d")
        assert isinstance(plan, pos3.TransferPlan)
        assert isinstance(plan.to_copy, list) and isinstance(plan.to_delete, list)


# ---------------------------------------------------------------------------- cache layout


async def test_default_local_paths_follow_the_cache_layout(open_mirror: Any, s3: Any, bucket: str,
                                                          cache_root: Path) -> None:
    put(s3, bucket, {"a/b/c/file.txt": b"deep", "a/b/c/more/x": b"x", "top.bin": b"t", "zero": b""})
    base = cache_root / "_" / bucket
    async with open_mirror() as m:
        nested = await m.download(f"s3://{bucket}/a/b/c")
        assert nested == base / "a" / "b" / "c"
        assert local_tree(nested) == {"file.txt": b"deep", "more/x": b"x"}
        one = await m.download(f"s3://{bucket}/a/b/c/more/x", local=None, delete=True)
        # (a child of a registered download: allowed, both are downloads)
        assert one == base / "a" / "b" / "c" / "more" / "x" and one.read_bytes() == b"x"
        top = await m.download(f"s3://{bucket}/top.bin")
        assert top == base / "top.bin" and top.is_file() and top.read_bytes() == b"t"
        empty = await m.download(f"s3://{bucket}/zero")
        assert empty.is_file() and empty.read_bytes() == b""
        out = await m.upload(f"s3://{bucket}/results")
        assert out == base / "results" and out.is_dir()


async def test_trailing_slash_forces_the_folder_meaning(open_mirror: Any, s3: Any, bucket: str,
                                                        cache_root: Path) -> None:
    put(s3, bucket, {"model.pt": b"weights", "data/a": b"a"})
    async with open_mirror() as m:
        with pytest.raises(FileNotFoundError, match=r"model\.pt"):
            await m.download(f"s3://{bucket}/model.pt/")
        data = await m.download(f"s3://{bucket}/data/")
        assert data == cache_root / "_" / bucket / "data"
        assert local_tree(data) == {"a": b"a"}
        # the same prefix without the slash is the same registration
        assert await m.download(f"s3://{bucket}/data") == data
    assert not (cache_root / "_" / bucket / "model.pt").exists()


async def test_prefix_holding_only_a_folder_marker_is_an_empty_folder(open_mirror: Any, s3: Any, bucket: str,
                                                                      cache_root: Path) -> None:
    put(s3, bucket, {"made-in-console/": b""})
    async with open_mirror() as m:
        got = await m.download(f"s3://{bucket}/made-in-console")
    assert got == cache_root / "_" / bucket / "made-in-console"
    assert got.is_dir() and os.listdir(got) == []


async def test_whole_bucket_download(open_mirror: Any, s3: Any, bucket: str, cache_root: Path) -> None:
    put(s3, bucket, {"x": b"1", "d/y": b"2"})
    async with open_mirror() as m:
        got = await m.download(f"s3://{bucket}")
        assert got == cache_root / "_" / bucket
        assert local_tree(got) == {"x": b"1", "d/y": b"2"}
        assert await m.download(f"s3://{bucket}/") == got


async def test_single_object_to_an_explicit_local_file(open_mirror: Any, s3: Any, bucket: str,
                                                       tmp_path: Path) -> None:
    put(s3, bucket, {"models/best.pt": b"best"})
    target = tmp_path / "here" / "best.pt"
    async with open_mirror() as m:
        got = await m.download(f"s3://{bucket}/models/best.pt", local=target)
    assert got == target and target.read_bytes() == b"best"


async def test_upload_of_a_single_file(open_mirror: Any, s3: Any, bucket: str, tmp_path: Path) -> None:
    src = tmp_path / "model.pt"
    src.write_bytes(b"w1")
    async with open_mirror() as m:
        got = await m.upload(f"s3://{bucket}/ckpt/model.pt", local=src, interval=None)
        assert got == src
    assert remote_tree(s3, bucket) == {"ckpt/model.pt": b"w1"}
    src.write_bytes(b"w2")
    async with open_mirror() as m:
        await m.upload(f"s3://{bucket}/ckpt/model.pt", local=src, interval=None)
    assert remote_tree(s3, bucket) == {"ckpt/model.pt": b"w2"}


# ---------------------------------------------------------------------------- keys and listings


ODD_KEYS = {
    "d/with space.txt": b"space",
    "d/ünïcödé/日本語.bin": b"unicode",
    "d/plus+and&amp;=%20.txt": b"escapes",
    "d/sub dir/empty": b"",
    "d/[x] #1?.txt": b"brackets",
    "d/~tilde;semi,comma'quote": b"punct",
}


async def test_unicode_and_space_keys_round_trip(open_mirror: Any, s3: Any, bucket: str, tmp_path: Path) -> None:
    put(s3, bucket, ODD_KEYS)
    async with open_mirror() as m:
        got = await m.download(f"s3://{bucket}/d")
        assert local_tree(got) == {k[2:]: v for k, v in ODD_KEYS.items()}
        listed = await m.ls(f"s3://{bucket}/d", recursive=True)
        assert {f"s3://{bucket}/{k}" for k in ODD_KEYS} <= set(listed)
        up = tmp_path / "up"
        for k, v in ODD_KEYS.items():
            (up / k[2:]).parent.mkdir(parents=True, exist_ok=True)
            (up / k[2:]).write_bytes(v)
        await m.upload(f"s3://{bucket}/u", local=up, interval=None)
    assert remote_tree(s3, bucket, "u/") == {"u/" + k[2:]: v for k, v in ODD_KEYS.items()}
    async with open_mirror() as m:
        plan = await m.plan_download(f"s3://{bucket}/d")
        assert plan.to_copy == [] and plan.to_delete == []
        plan = await m.plan_upload(f"s3://{bucket}/u", local=up)
        assert plan.to_copy == [] and plan.to_delete == []


async def test_ls_s3_and_local_levels(open_mirror: Any, s3: Any, bucket: str, tmp_path: Path) -> None:
    put(s3, bucket, {"data/file.txt": b"1", "data/sub/nested.txt": b"2", "data-other/x": b"3", "data_v2/y": b"4"})
    local = tmp_path / "l"
    (local / "dir").mkdir(parents=True)
    (local / "file.txt").write_bytes(b"x")
    (local / "dir" / "nested.txt").write_bytes(b"x")
    async with open_mirror() as m:
        flat = await m.ls(f"s3://{bucket}/data")
        assert sorted(flat) == [f"s3://{bucket}/data/file.txt", f"s3://{bucket}/data/sub"]
        assert await m.ls(f"s3://{bucket}/data/") == flat
        deep = await m.ls(f"s3://{bucket}/data", recursive=True)
        assert f"s3://{bucket}/data/sub/nested.txt" in deep and f"s3://{bucket}/data/file.txt" in deep
        assert not any("data-other" in u or "data_v2" in u for u in deep)
        top = await m.ls(f"s3://{bucket}")
        assert {f"s3://{bucket}/data", f"s3://{bucket}/data-other", f"s3://{bucket}/data_v2"} <= set(top)
        assert await m.ls(f"s3://{bucket}/nothing-here") == []

        lflat = await m.ls(str(local))
        assert sorted(lflat) == [str(local / "dir"), str(local / "file.txt")]
        ldeep = await m.ls(str(local), recursive=True)
        assert str(local / "dir" / "nested.txt") in ldeep and str(local / "file.txt") in ldeep


@pytest.mark.slow(2)
async def test_pagination_past_1000_objects(server: Any, s3: Any, bucket: str, cache_root: Path) -> None:
    n = 1001
    put_many(server, s3, bucket, {f"many/f{i:05}": b"%d" % i for i in range(n)})
    async with pos3.amirror(cache_root=cache_root, show_progress=False) as m:
        plan = await m.plan_download(f"s3://{bucket}/many")
        assert len(plan.to_copy) == n
        got = await m.download(f"s3://{bucket}/many")
        assert len(await m.ls(f"s3://{bucket}/many")) == n
        assert len(await m.ls(f"s3://{bucket}/many", recursive=True)) == n
    assert len(os.listdir(got)) == n
    assert (got / "f01000").read_bytes() == b"1000"


# ---------------------------------------------------------------------------- exclude


async def test_exclude_glob_forms_on_download(open_mirror: Any, s3: Any, bucket: str, tmp_path: Path) -> None:
    put(s3, bucket, {
        "d/keep.txt": b"k",
        "d/a.log": b"l", "d/sub/deep/b.log": b"l",          # **/*.log
        "d/cache/x": b"c", "d/cache/y/z": b"c",             # cache/**
        "d/f1.tmp": b"t", "d/f22.tmp": b"kept",             # f?.tmp
        "d/ab.dat": b"x", "d/cd.dat": b"kept",              # [ab]*.dat
    })
    local = tmp_path / "l"
    async with open_mirror() as m:
        await m.download(f"s3://{bucket}/d", local=local, exclude=["**/*.log", "cache/**", "f?.tmp", "[ab]*.dat"])
    assert local_tree(local) == {"keep.txt": b"k", "f22.tmp": b"kept", "cd.dat": b"kept"}


async def test_exclude_on_upload_protects_remote_and_local(open_mirror: Any, s3: Any, bucket: str,
                                                           tmp_path: Path) -> None:
    put(s3, bucket, {"o/remote.log": b"r", "o/sub/remote.log": b"r", "o/gone.txt": b"g"})
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_bytes(b"a")
    (src / "sub" / "local.log").write_bytes(b"never")
    async with open_mirror() as m:
        await m.upload(f"s3://{bucket}/o", local=src, interval=None, exclude=["**/*.log"])
    files = {k: v for k, v in remote_tree(s3, bucket, "o/").items() if not k.endswith("/")}
    assert files == {"o/a.txt": b"a", "o/remote.log": b"r", "o/sub/remote.log": b"r"}
    assert local_tree(src) == {"a.txt": b"a", "sub/local.log": b"never"}


async def test_exclude_on_upload_adds_no_marker_for_a_folder_s3_has(open_mirror: Any, s3: Any, bucket: str,
                                                                    tmp_path: Path) -> None:
    put(s3, bucket, {"o/sub/remote.log": b"r"})
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "local.log").write_bytes(b"never")
    async with open_mirror() as m:
        await m.upload(f"s3://{bucket}/o", local=src, interval=None, exclude=["*.log"])
    assert remote_tree(s3, bucket, "o/") == {"o/sub/remote.log": b"r"}


# ---------------------------------------------------------------------------- plans


async def test_plan_download_has_no_side_effects_and_matches_the_run(
    open_mirror: Any, s3: Any, bucket: str, cache_root: Path, server: CountingMotoServer
) -> None:
    put(s3, bucket, {"d/a": b"a", "d/s/b": b"bb", "d/empty/": b""})
    async with open_mirror() as m:
        server.log.clear()
        plan = await m.plan_download(f"s3://{bucket}/d")
        assert server.log.count("PUT") == 0 and server.log.count("DELETE") == 0
        assert not (cache_root / "_").exists()  # nothing created on disk
        base = cache_root / "_" / bucket / "d"
        files = {(f"s3://{bucket}/d/a", str(base / "a")), (f"s3://{bucket}/d/s/b", str(base / "s" / "b"))}
        assert files <= set(plan.to_copy)
        assert plan.to_delete == []
        # a plan registers nothing: the same prefix may be registered for upload afterwards
        await m.upload(f"s3://{bucket}/d", interval=None, delete=False)
    async with open_mirror() as m:
        await m.download(f"s3://{bucket}/d")
        assert (await m.plan_download(f"s3://{bucket}/d")).to_copy == []
    assert local_tree(base) == {"a": b"a", "s/b": b"bb"}
    assert (base / "empty").is_dir()


async def test_plan_download_lists_deletes_and_respects_delete_and_exclude(
    open_mirror: Any, s3: Any, bucket: str, tmp_path: Path
) -> None:
    put(s3, bucket, {"d/a": b"a"})
    local = tmp_path / "l"
    local.mkdir()
    (local / "stale").write_bytes(b"s")
    (local / "keep.log").write_bytes(b"k")
    async with open_mirror() as m:
        plan = await m.plan_download(f"s3://{bucket}/d", local=local)
        assert plan.to_copy == [(f"s3://{bucket}/d/a", str(local / "a"))]
        assert sorted(plan.to_delete) == [str(local / "keep.log"), str(local / "stale")]
        assert (await m.plan_download(f"s3://{bucket}/d", local=local, delete=False)).to_delete == []
        plan = await m.plan_download(f"s3://{bucket}/d", local=local, exclude=["*.log"])
        assert plan.to_delete == [str(local / "stale")]
    assert local_tree(local) == {"stale": b"s", "keep.log": b"k"}  # nothing happened


async def test_plan_upload_has_no_side_effects(open_mirror: Any, s3: Any, bucket: str, tmp_path: Path,
                                               server: CountingMotoServer, cache_root: Path) -> None:
    put(s3, bucket, {"o/old": b"o", "o/same": b"s"})
    src = tmp_path / "src"
    src.mkdir()
    (src / "new").write_bytes(b"n")
    (src / "same").write_bytes(b"s")
    async with open_mirror() as m:
        server.log.clear()
        plan = await m.plan_upload(f"s3://{bucket}/o", local=src)
        assert server.log.count("PUT") == 0 and server.log.count("POST") == 0 and server.log.count("DELETE") == 0
        assert plan.to_copy == [(str(src / "new"), f"s3://{bucket}/o/new")]
        assert plan.to_delete == [f"s3://{bucket}/o/old"]
        assert (await m.plan_upload(f"s3://{bucket}/o", local=src, delete=False)).to_delete == []
        # default local path of an upload plan, which does not exist: an empty plan of copies, no folder made
        plan = await m.plan_upload(f"s3://{bucket}/o2")
        assert plan.to_copy == []
    assert remote_tree(s3, bucket) == {"o/old": b"o", "o/same": b"s"}
    assert not (cache_root / "_" / bucket / "o2").exists()


async def test_plan_reasons_cover_every_kind(open_mirror: Any, s3: Any, bucket: str) -> None:
    put(s3, bucket, {"d/remote": b"r1", "d/local": b"l1", "d/missing": b"m", "d/same": b"s"})
    async with open_mirror() as m:
        path = await m.download(f"s3://{bucket}/d")
    put(s3, bucket, {"d/remote": b"r2", "d/new": b"n"})
    (path / "local").write_bytes(b"L1")
    (path / "missing").unlink()
    async with open_mirror() as m:
        plan = await m.plan_download(f"s3://{bucket}/d")
        reasons = {Path(a.dst).name: a.reason for a in plan.actions}
        assert reasons == {"remote": "changed remotely", "local": "changed locally", "missing": "missing",
                           "new": "new"}
        await m.download(f"s3://{bucket}/d")
        assert (await m.plan_download(f"s3://{bucket}/d")).actions == ()
    assert local_tree(path) == {"remote": b"r2", "local": b"l1", "missing": b"m", "same": b"s", "new": b"n"}


# ---------------------------------------------------------------------------- registrations


async def test_download_overlapping_an_upload_raises(open_mirror: Any, s3: Any, bucket: str) -> None:
    put(s3, bucket, {"out/sub/x": b"x", "out/y": b"y"})
    async with open_mirror() as m:
        await m.upload(f"s3://{bucket}/out", interval=None, delete=False)
        for url in (f"s3://{bucket}/out", f"s3://{bucket}/out/sub", f"s3://{bucket}/out/", f"s3://{bucket}"):
            with pytest.raises(ValueError):
                await m.download(url)
        with pytest.raises(ValueError):
            await m.sync(f"s3://{bucket}/out/sub", interval=None)


async def test_identical_sync_twice_returns_the_same_path(open_mirror: Any, s3: Any, bucket: str,
                                                          server: CountingMotoServer) -> None:
    put(s3, bucket, {"s/a": b"a"})
    async with open_mirror() as m:
        first = await m.sync(f"s3://{bucket}/s", interval=None)
        server.log.clear()
        assert await m.sync(f"s3://{bucket}/s", interval=None) == first
        assert server.log.count() == 0
        with pytest.raises(ValueError):
            await m.sync(f"s3://{bucket}/s", interval=None, delete_remote=False)


async def test_different_local_for_the_same_remote_raises(open_mirror: Any, s3: Any, bucket: str,
                                                          tmp_path: Path) -> None:
    put(s3, bucket, {"d/a": b"a"})
    async with open_mirror() as m:
        await m.download(f"s3://{bucket}/d", local=tmp_path / "one")
        with pytest.raises(ValueError):
            await m.download(f"s3://{bucket}/d", local=tmp_path / "two")
        with pytest.raises(ValueError):
            await m.download(f"s3://{bucket}/d", local=tmp_path / "one", exclude=["*.log"])


# ---------------------------------------------------------------------------- sync and exit rules


async def test_sync_round_trip_mirrors_local_edits_on_exit(open_mirror: Any, s3: Any, bucket: str) -> None:
    put(s3, bucket, {"job/keep": b"k", "job/edit": b"v1", "job/drop": b"d", "job/sub/x": b"x"})
    async with open_mirror() as m:
        path = await m.sync(f"s3://{bucket}/job", interval=None)
        assert local_tree(path) == {"keep": b"k", "edit": b"v1", "drop": b"d", "sub/x": b"x"}
        (path / "edit").write_bytes(b"v2")
        (path / "drop").unlink()
        (path / "new").write_bytes(b"n")
        (path / "sub" / "x").unlink()
        (path / "sub").rmdir()
    assert remote_tree(s3, bucket, "job/") == {"job/keep": b"k", "job/edit": b"v2", "job/new": b"n"}


async def test_sync_delete_flags(open_mirror: Any, s3: Any, bucket: str, tmp_path: Path) -> None:
    put(s3, bucket, {"s/shared": b"s", "s/remote-only": b"r"})
    local = tmp_path / "l"
    local.mkdir()
    (local / "local-only").write_bytes(b"l")
    async with open_mirror() as m:
        await m.sync(f"s3://{bucket}/s", local=local, interval=None, delete_local=False, delete_remote=False)
        s3.put_object(Bucket=bucket, Key="s/added-later", Body=b"a")
    assert local_tree(local) == {"shared": b"s", "remote-only": b"r", "local-only": b"l"}
    assert remote_tree(s3, bucket, "s/") == {"s/shared": b"s", "s/remote-only": b"r", "s/local-only": b"l",
                                             "s/added-later": b"a"}
    local2 = tmp_path / "l2"
    local2.mkdir()
    (local2 / "mine").write_bytes(b"m")
    async with open_mirror() as m:
        await m.sync(f"s3://{bucket}/s", local=local2, interval=None)  # both deletes on
        # Never in sync: local work, kept by the download and sent by the upload (issue 12).
        assert local_tree(local2)["mine"] == b"m"
        (local2 / "shared").unlink()
    assert remote_tree(s3, bucket, "s/") == {f"s/{k}": v for k, v in local_tree(local2).items()}


async def test_sync_of_a_missing_bucket_raises(open_mirror: Any, server: Any, cache_root: Path) -> None:
    async with open_mirror() as m:
        with pytest.raises(FileNotFoundError, match="no-such-bucket-y"):
            await m.sync("s3://no-such-bucket-y/data", interval=None)
    assert not (cache_root / "_" / "no-such-bucket-y").exists()


async def test_upload_whose_folder_was_deleted_deletes_nothing_remotely(
    open_mirror: Any, s3: Any, bucket: str, tmp_path: Path
) -> None:
    import shutil

    put(s3, bucket, {"out/precious": b"p", "out/sub/also": b"a"})
    src = tmp_path / "src"
    async with open_mirror() as m:
        got = await m.upload(f"s3://{bucket}/out", local=src, interval=None)
        assert got.is_dir()
        shutil.rmtree(got)
    assert remote_tree(s3, bucket, "out/") == {"out/precious": b"p", "out/sub/also": b"a"}


async def test_interval_none_only_uploads_on_exit(open_mirror: Any, s3: Any, bucket: str) -> None:
    async with open_mirror() as m:
        quiet = await m.upload(f"s3://{bucket}/quiet", interval=None)
        busy = await m.upload(f"s3://{bucket}/busy", interval=0.2, settle=None)
        (quiet / "q").write_bytes(b"q")
        (busy / "b").write_bytes(b"b")
        await wait_for(lambda: "busy/b" in remote_tree(s3, bucket, "busy/"))
        (busy / "c").write_bytes(b"c")
        await wait_for(lambda: "busy/c" in remote_tree(s3, bucket, "busy/"))
        assert remote_tree(s3, bucket, "quiet/") == {}  # two background rounds ran; none for interval=None
    assert remote_tree(s3, bucket, "quiet/") == {"quiet/q": b"q"}


async def test_invalid_interval_is_a_value_error(open_mirror: Any, bucket: str) -> None:
    async with open_mirror() as m:
        for bad in (0, -1, float("nan")):
            with pytest.raises(ValueError):
                await m.upload(f"s3://{bucket}/x{abs(hash(str(bad)))}", interval=bad)


async def test_body_exception_wins_over_a_failing_sync_on_error_upload(open_mirror: Any, s3: Any,
                                                                       bucket: str) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with open_mirror() as m:
            out = await m.upload(f"s3://{bucket}/o", interval=None, sync_on_error=True)
            (out / "f").write_bytes(b"1")
            s3.delete_bucket(Bucket=bucket)
            raise Boom


async def test_exit_upload_sends_everything_even_when_files_are_fresh(open_mirror: Any, s3: Any,
                                                                      bucket: str) -> None:
    async with open_mirror() as m:
        out = await m.upload(f"s3://{bucket}/ck", interval=0.1, settle=3600)
        (out / "model.bin").write_bytes(b"just written")
    assert remote_tree(s3, bucket, "ck/") == {"ck/model.bin": b"just written"}


async def test_upload_created_default_folder_is_registered_once(open_mirror: Any, s3: Any, bucket: str,
                                                                cache_root: Path) -> None:
    async with open_mirror() as m:
        out = await m.upload(f"s3://{bucket}/results/")
        assert out == cache_root / "_" / bucket / "results"
        assert await m.upload(f"s3://{bucket}/results") == out
        (out / "pred.csv").write_bytes(b"1,2\n")
    assert remote_tree(s3, bucket) == {"results/pred.csv": b"1,2\n"}


# ---------------------------------------------------------------------------- clear errors


@pytest.mark.parametrize("bad", ["s3:/x", "s3://", "s3:///key", "http://host/x", "S3://b/k", "s3:x"])
async def test_malformed_urls_raise_from_every_method(open_mirror: Any, bad: str, cache_root: Path) -> None:
    async with open_mirror() as m:
        for name in ("download", "upload", "sync", "ls", "plan_download", "plan_upload"):
            if name == "ls" and bad == "s3://":
                assert isinstance(await m.ls(bad), list)  # s3:// alone lists the buckets, as `aws s3 ls`
                continue
            with pytest.raises(ValueError):
                await getattr(m, name)(bad)
    assert not (cache_root / "_").exists()
    assert not Path(bad).exists() and not Path("s3:").exists() and not Path("http:").exists()


async def test_empty_prefix_download_names_it_and_leaves_nothing(open_mirror: Any, bucket: str,
                                                                 cache_root: Path) -> None:
    async with open_mirror() as m:
        with pytest.raises(FileNotFoundError, match=f"s3://{bucket}/nothing"):
            await m.download(f"s3://{bucket}/nothing")
        with pytest.raises(FileNotFoundError, match=f"s3://{bucket}/nothing"):
            await m.plan_download(f"s3://{bucket}/nothing")
        # and it may be retried (the failed registration is not kept)
        with pytest.raises(FileNotFoundError):
            await m.download(f"s3://{bucket}/nothing")
    assert not (cache_root / "_" / bucket / "nothing").exists()


async def test_missing_key_of_a_single_object_is_file_not_found(open_mirror: Any, s3: Any, bucket: str) -> None:
    put(s3, bucket, {"there.txt": b"t"})
    async with open_mirror() as m:
        with pytest.raises(FileNotFoundError, match=r"not-there\.txt"):
            await m.download(f"s3://{bucket}/not-there.txt")


def _deny_get(s3: Any, bucket: str) -> None:
    import json

    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject",
                       "Resource": [f"arn:aws:s3:::{bucket}/*"]}],
    }))


async def test_access_denied_names_the_url_and_the_cause(open_mirror: Any, s3: Any, bucket: str) -> None:
    put(s3, bucket, {"d/a": b"a", "d/b": b"b"})
    _deny_get(s3, bucket)
    async with open_mirror() as m:
        with pytest.raises(pos3.Pos3Error) as info:
            await m.download(f"s3://{bucket}/d")
    assert f"s3://{bucket}/d/a" in str(info.value) and "access denied" in str(info.value)
    if isinstance(info.value, pos3.TransferError):
        assert all(isinstance(f.error, PermissionError) for f in info.value.failures)
        assert len(info.value.failures) == 2


async def test_access_denied_leaves_no_empty_folder(open_mirror: Any, s3: Any, bucket: str,
                                                    cache_root: Path) -> None:
    put(s3, bucket, {"d/a": b"a"})
    _deny_get(s3, bucket)
    async with open_mirror() as m:
        with pytest.raises(pos3.Pos3Error):
            await m.download(f"s3://{bucket}/d")
    assert not (cache_root / "_" / bucket / "d").exists()


async def test_access_denied_on_every_object_is_a_permission_error(open_mirror: Any, s3: Any, bucket: str) -> None:
    put(s3, bucket, {"d/a": b"a"})
    _deny_get(s3, bucket)
    async with open_mirror() as m:
        with pytest.raises(PermissionError):
            await m.download(f"s3://{bucket}/d")


# ---------------------------------------------------------------------------- state store and cache


async def test_state_store_never_shows_in_a_mirrored_tree(open_mirror: Any, s3: Any, bucket: str,
                                                          cache_root: Path) -> None:
    put(s3, bucket, {"d/a": b"a"})
    async with open_mirror() as m:
        got = await m.download(f"s3://{bucket}/d")
        out = await m.upload(f"s3://{bucket}/o", interval=None)
        (out / "f").write_bytes(b"f")
    assert os.listdir(got) == ["a"]
    assert os.listdir(out) == ["f"]
    assert sorted(os.listdir(cache_root / "_" / bucket)) == ["d", "o"]
    assert remote_tree(s3, bucket, "o/") == {"o/f": b"f"}


async def test_older_format_state_store_is_rebuilt(open_mirror: Any, s3: Any, bucket: str,
                                                   cache_root: Path) -> None:
    import sqlite3

    put(s3, bucket, {"d/a": b"a"})
    (cache_root / ".pos3").mkdir(parents=True)
    db = sqlite3.connect(cache_root / ".pos3" / "state.db")
    db.execute("CREATE TABLE meta (k TEXT PRIMARY KEY, v TEXT NOT NULL)")
    db.execute("INSERT INTO meta VALUES ('schema', '0')")
    db.execute("CREATE TABLE files (path TEXT PRIMARY KEY, something_else TEXT)")
    db.commit()
    db.close()
    async with open_mirror() as m:
        got = await m.download(f"s3://{bucket}/d")
    assert local_tree(got) == {"a": b"a"}
    async with open_mirror() as m:
        assert (await m.plan_download(f"s3://{bucket}/d")).actions == ()


def test_pos3_cache_max_bytes_env_evicts_lru(s3: Any, bucket: str, cache_root: Path, monkeypatch: Any) -> None:
    for name in "ab":
        put(s3, bucket, {f"{name}/blob": bytes([ord(name)]) * 50_000})
    tree = cache_root / "_" / bucket
    with pos3.mirror(cache_root=cache_root, show_progress=False):
        pos3.download(f"s3://{bucket}/a")
    monkeypatch.setenv("POS3_CACHE_MAX_BYTES", "60000")
    with pos3.mirror(cache_root=cache_root, show_progress=False):
        pos3.download(f"s3://{bucket}/b")
        assert (tree / "b" / "blob").exists()
        assert not (tree / "a").exists()


def test_invalid_cache_max_bytes_env_is_a_value_error(server: Any, cache_root: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("POS3_CACHE_MAX_BYTES", "lots")
    with pytest.raises(ValueError, match="POS3_CACHE_MAX_BYTES"), pos3.mirror(cache_root=cache_root):
        pass


# ---------------------------------------------------------------------------- training features


async def test_shard_none_is_the_whole_prefix_and_bad_shards_raise(open_mirror: Any, s3: Any, bucket: str,
                                                                   tmp_path: Path) -> None:
    put(s3, bucket, {f"ds/{i}": b"x" * (i + 1) for i in range(5)})
    async with open_mirror() as m:
        for bad in ((-1, 2), (2, 2), (0, 0), (0, -1), (0.5, 2), "0/2"):
            with pytest.raises(ValueError, match="shard"):
                await m.download(f"s3://{bucket}/ds", shard=bad)  # type: ignore[arg-type]
        whole = await m.download(f"s3://{bucket}/ds", local=tmp_path / "all", shard=None)
        assert len(local_tree(whole)) == 5
    async with open_mirror() as m:
        one = await m.download(f"s3://{bucket}/ds", local=tmp_path / "one", shard=(0, 1))
        assert local_tree(one) == local_tree(whole)


async def test_shards_through_plan_match_the_download(open_mirror: Any, s3: Any, bucket: str,
                                                      tmp_path: Path) -> None:
    put(s3, bucket, {f"ds/f{i}": b"y" * (10 * i + 1) for i in range(9)})
    seen: list[set[str]] = []
    for rank in range(3):
        async with open_mirror() as m:  # one job per rank
            plan = await m.plan_download(f"s3://{bucket}/ds", local=tmp_path / f"r{rank}", shard=(rank, 3))
            got = await m.download(f"s3://{bucket}/ds", local=tmp_path / f"r{rank}", shard=(rank, 3))
            assert {Path(dst).name for _, dst in plan.to_copy} == set(local_tree(got))
            seen.append(set(local_tree(got)))
    assert set().union(*seen) == {f"f{i}" for i in range(9)}
    assert sum(len(s) for s in seen) == 9


async def test_atomic_upload_is_read_back_with_download(open_mirror: Any, s3: Any, bucket: str,
                                                        tmp_path: Path) -> None:
    src = tmp_path / "ckpt"
    src.mkdir()
    (src / "model.pt").write_bytes(b"v1")
    (src / "opt.pt").write_bytes(b"o1")
    async with open_mirror() as m:
        await m.upload(f"s3://{bucket}/run/ckpt", local=src, interval=None, atomic=True)
    (src / "opt.pt").unlink()
    (src / "model.pt").write_bytes(b"v2")
    async with open_mirror() as m:
        await m.upload(f"s3://{bucket}/run/ckpt", local=src, interval=None, atomic=True)
    async with open_mirror() as m:
        got = await m.download(f"s3://{bucket}/run/ckpt", local=tmp_path / "reader")
        assert local_tree(got) == {"model.pt": b"v2"}
        plan = await m.plan_download(f"s3://{bucket}/run/ckpt", local=tmp_path / "reader")
        assert plan.actions == ()


async def test_sync_with_atomic_round_trip(open_mirror: Any, s3: Any, bucket: str) -> None:
    async with open_mirror() as m:
        path = await m.sync(f"s3://{bucket}/state", interval=None, atomic=True)  # first run: empty prefix
        (path / "step").write_bytes(b"1")
    async with open_mirror() as m:
        path = await m.sync(f"s3://{bucket}/state", interval=None, atomic=True)
        assert local_tree(path) == {"step": b"1"}
        (path / "step").write_bytes(b"2")
    async with open_mirror() as m:
        got = await m.download(f"s3://{bucket}/state", local=path.parent / "check")
    assert local_tree(got) == {"step": b"2"}


async def test_sync_first_run_of_a_file_key_returns_a_writable_file_path(open_mirror: Any, s3: Any,
                                                                         bucket: str) -> None:
    async with open_mirror() as m:
        up = await m.upload(f"s3://{bucket}/a/model.pt", interval=None)
        assert not up.is_dir()
        up.write_bytes(b"w")
        path = await m.sync(f"s3://{bucket}/b/metrics.json", interval=None)  # first run: nothing there yet
        assert not path.is_dir()
        path.write_bytes(b"{}")
    assert remote_tree(s3, bucket) == {"a/model.pt": b"w", "b/metrics.json": b"{}"}


async def test_sync_of_an_existing_single_object(open_mirror: Any, s3: Any, bucket: str) -> None:
    put(s3, bucket, {"state.json": b"{1}"})
    async with open_mirror() as m:
        path = await m.sync(f"s3://{bucket}/state.json", interval=None)
        assert path.is_file() and path.read_bytes() == b"{1}"
        path.write_bytes(b"{2}")
    assert remote_tree(s3, bucket) == {"state.json": b"{2}"}


async def test_cancelled_amirror_body_never_uploads(s3: Any, bucket: str, cache_root: Path) -> None:
    put(s3, bucket, {"out/precious": b"p"})
    with anyio.CancelScope() as scope:
        async with pos3.amirror(cache_root=cache_root, show_progress=False) as m:
            out = await m.upload(f"s3://{bucket}/out", interval=None, sync_on_error=True)
            (out / "half").write_bytes(b"h")
            scope.cancel()
            await anyio.sleep(5)  # cancelled at once: never waits
    assert scope.cancelled_caught
    assert remote_tree(s3, bucket) == {"out/precious": b"p"}


async def test_two_async_mirrors_on_one_root_at_once(s3: Any, bucket: str, cache_root: Path) -> None:
    put(s3, bucket, {f"d/f{i}": bytes([i]) * 2000 for i in range(40)})
    results: list[Path] = []

    async def job() -> None:
        async with pos3.amirror(cache_root=cache_root, show_progress=False) as m:
            results.append(await m.download(f"s3://{bucket}/d"))

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(job)
    assert len(set(results)) == 1
    assert local_tree(results[0]) == {f"f{i}": bytes([i]) * 2000 for i in range(40)}


async def test_failing_background_sync_is_logged(s3: Any, bucket: str, cache_root: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("WARNING", logger="pos3")
    async with pos3.amirror(cache_root=cache_root, show_progress=False) as m:
        out = await m.upload(f"s3://{bucket}/bg", interval=0.1, settle=None)
        s3.delete_bucket(Bucket=bucket)
        (out / "f").write_bytes(b"1")
        await wait_for(lambda: any("background" in r.getMessage() for r in caplog.records))
        s3.create_bucket(Bucket=bucket)
        await wait_for(lambda: "bg/f" in remote_tree(s3, bucket, "bg/"))
    assert any(bucket in r.getMessage() for r in caplog.records if "background" in r.getMessage())


async def test_leftover_partial_files_are_cleaned_even_without_delete(open_mirror: Any, s3: Any, bucket: str,
                                                                      cache_root: Path) -> None:
    put(s3, bucket, {"t/a": b"a"})
    async with open_mirror() as m:
        await m.download(f"s3://{bucket}/t", delete=False)
    staging = cache_root / ".pos3" / "staging"
    folder = next(p for p in staging.iterdir() if p.is_dir())
    (folder / "killed.part").write_bytes(b"partial")
    put(s3, bucket, {"t/b": b"b"})
    async with open_mirror() as m:
        got = await m.download(f"s3://{bucket}/t", delete=False)
    assert not (folder / "killed.part").exists()
    assert sorted(os.listdir(got)) == ["a", "b"]


async def test_a_dry_run_on_a_fresh_cache_creates_nothing(open_mirror: Any, s3: Any, bucket: str,
                                                          cache_root: Path) -> None:
    put(s3, bucket, {"d/a": b"a"})
    async with open_mirror() as m:
        await m.plan_download(f"s3://{bucket}/d")
        await m.plan_upload(f"s3://{bucket}/d")
        await m.ls(f"s3://{bucket}/d")
        assert not cache_root.exists()


async def test_resumed_sync_job_transfers_nothing_it_already_has(
    open_mirror: Any, s3: Any, bucket: str, server: CountingMotoServer
) -> None:
    async with open_mirror() as m:
        path = await m.sync(f"s3://{bucket}/run", interval=None)
        for i in range(20):
            (path / f"ckpt{i}").write_bytes(b"c%d" % i)
    server.log.clear()
    async with open_mirror() as m:  # the job restarts on the same machine
        again = await m.sync(f"s3://{bucket}/run", interval=None)
        assert again == path
    assert server.log.count("PUT") == 0 and server.log.count("DELETE") == 0
    assert sum(1 for meth, _, q in server.log.requests if meth == "GET" and "list-type" not in q) == 0
    assert server.log.count() <= 4


async def test_exit_after_a_background_upload_sends_nothing_twice(
    open_mirror: Any, s3: Any, bucket: str, server: CountingMotoServer
) -> None:
    async with open_mirror() as m:
        out = await m.upload(f"s3://{bucket}/bg", interval=0.1, settle=None)
        (out / "f").write_bytes(b"1")
        await wait_for(lambda: "bg/f" in remote_tree(s3, bucket, "bg/"))
        puts = server.log.count("PUT")
    assert server.log.count("PUT") == puts


async def test_large_file_default_settings_round_trip(s3: Any, bucket: str, cache_root: Path,
                                                      tmp_path: Path) -> None:
    data = os.urandom((9 << 20) + 17)  # above the multipart threshold: a multipart ETag
    src = tmp_path / "src"
    src.mkdir()
    (src / "big.bin").write_bytes(data)
    async with pos3.amirror(cache_root=cache_root, show_progress=False) as m:
        await m.upload(f"s3://{bucket}/big", local=src, interval=None)
    assert "-" in s3.head_object(Bucket=bucket, Key="big/big.bin")["ETag"]
    async with pos3.amirror(cache_root=tmp_path / "other-cache", show_progress=False) as m:
        got = await m.download(f"s3://{bucket}/big")
    assert (got / "big.bin").read_bytes() == data
    edited = bytearray(data)
    edited[123] ^= 0xFF  # same size, other content
    (src / "big.bin").write_bytes(bytes(edited))
    async with pos3.amirror(cache_root=cache_root, show_progress=False) as m:
        await m.upload(f"s3://{bucket}/big", local=src, interval=None)
    async with pos3.amirror(cache_root=tmp_path / "other-cache", show_progress=False) as m:
        await m.download(f"s3://{bucket}/big")
    assert (got / "big.bin").read_bytes() == bytes(edited)


async def test_download_removes_local_folders_absent_remotely(open_mirror: Any, s3: Any, bucket: str,
                                                              tmp_path: Path) -> None:
    put(s3, bucket, {"d/a": b"a"})
    local = tmp_path / "l"
    (local / "stale" / "deeper").mkdir(parents=True)
    (local / "stale" / "deeper" / "x").write_bytes(b"x")
    (local / "empty").mkdir()
    async with open_mirror() as m:
        await m.download(f"s3://{bucket}/d", local=local)
    assert sorted(os.listdir(local)) == ["a"]


def test_error_messages_keep_the_phrases_of_pos3_0_4(s3: Any, bucket: str, cache_root: Path) -> None:
    put(s3, bucket, {"data/file.txt": b"12345"})
    with pytest.raises(RuntimeError, match="No active mirror"):
        pos3.download(f"s3://{bucket}/data")
    with pos3.mirror(cache_root=cache_root, show_progress=False):
        with pytest.raises(RuntimeError, match="Mirror already active"), pos3.mirror(cache_root=cache_root):
            pass
        pos3.download(f"s3://{bucket}/data", exclude=["*.log"])
        with pytest.raises(ValueError, match="already registered with different parameters"):
            pos3.download(f"s3://{bucket}/data", exclude=["*.txt"])
        with pytest.raises(ValueError, match="Conflict"):
            pos3.upload(f"s3://{bucket}/data/subdir")


async def test_sys_exit_zero_is_a_clean_exit(open_mirror: Any, s3: Any, bucket: str) -> None:
    with pytest.raises(SystemExit):
        async with open_mirror() as m:
            out = await m.upload(f"s3://{bucket}/o", interval=None)
            (out / "f").write_bytes(b"1")
            raise SystemExit(0)
    assert remote_tree(s3, bucket) == {"o/f": b"1"}


async def test_sys_exit_with_an_error_code_syncs_only_sync_on_error(open_mirror: Any, s3: Any, bucket: str) -> None:
    with pytest.raises(SystemExit):
        async with open_mirror() as m:
            keep = await m.upload(f"s3://{bucket}/logs", interval=None, sync_on_error=True)
            skip = await m.upload(f"s3://{bucket}/ckpt", interval=None)
            (keep / "log.txt").write_bytes(b"diverged")
            (skip / "model").write_bytes(b"bad")
            raise SystemExit(1)
    assert remote_tree(s3, bucket) == {"logs/log.txt": b"diverged"}


async def test_upload_folder_with_a_dotted_version_name_is_created(open_mirror: Any, s3: Any, bucket: str) -> None:
    async with open_mirror() as m:
        for name in ("runs/v1.2", "sweeps/lr-0.001", "days/2024.01.05"):
            out = await m.upload(f"s3://{bucket}/{name}", interval=None)
            (out / "pred.csv").write_bytes(b"1\n")  # as the issue's example does with `out`
    assert set(remote_tree(s3, bucket)) == {"runs/v1.2/pred.csv", "sweeps/lr-0.001/pred.csv",
                                            "days/2024.01.05/pred.csv"}


async def test_progress_shows_the_finished_transfer(open_mirror: Any, s3: Any, bucket: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    put(s3, bucket, {"p/a": b"x" * 200_000, "p/b": b"y" * 10})
    stream = _Terminal()
    monkeypatch.setattr("sys.stderr", stream)  # stderr is a terminal: the library draws a bar
    async with open_mirror(show_progress=True) as m:
        await m.download(f"s3://{bucket}/p")
    monkeypatch.undo()
    err = stream.getvalue()
    assert "100%" in err and "195.3 KiB/195.3 KiB" in err and "2/2 files" in err
    assert f"download s3://{bucket}/p: 2 files, 195.3 KiB in " in err  # the summary line


async def test_one_worker_is_enough_for_every_operation(s3: Any, bucket: str, cache_root: Path,
                                                        tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    big = os.urandom((9 << 20) + 5)
    (src / "big.bin").write_bytes(big)
    for i in range(5):
        (src / f"s{i}").write_bytes(b"%d" % i)
    with anyio.fail_after(90):  # a shared limiter taken twice by one task would hang here
        async with pos3.amirror(cache_root=cache_root, show_progress=False, max_workers=1) as m:
            await m.upload(f"s3://{bucket}/u", local=src, interval=None)
            await m.upload(f"s3://{bucket}/a", local=src, interval=None, atomic=True)
        other = tmp_path / "other"
        other.mkdir()
        (other / "s0").write_bytes(b"0")  # same size, no record: a content check
        async with pos3.amirror(cache_root=cache_root, show_progress=False, max_workers=1) as m:
            got = await m.download(f"s3://{bucket}/u", local=other)
            snap = await m.download(f"s3://{bucket}/a", local=tmp_path / "snap")
    assert local_tree(got) == local_tree(src) == local_tree(snap)


async def test_atomic_upload_of_a_single_file_is_not_silently_dropped(open_mirror: Any, s3: Any, bucket: str,
                                                                      tmp_path: Path) -> None:
    src = tmp_path / "model.pt"
    src.write_bytes(b"weights")
    try:
        async with open_mirror() as m:
            await m.upload(f"s3://{bucket}/ckpt/model.pt", local=src, interval=None, atomic=True)
    except ValueError:
        return  # refusing it clearly is fine too
    async with open_mirror() as m:
        got = await m.download(f"s3://{bucket}/ckpt/model.pt", local=tmp_path / "back.pt")
    assert got.read_bytes() == b"weights"


def test_eviction_never_deletes_a_tree_in_use_below_an_evicted_one(s3: Any, bucket: str, cache_root: Path) -> None:
    put(s3, bucket, {"data/big": b"d" * 100_000, "data/sub/x": b"x" * 10, "other/blob": b"o" * 100_000})
    with pos3.mirror(cache_root=cache_root, show_progress=False):
        pos3.download(f"s3://{bucket}/data")  # least recently used once closed
    with pos3.mirror(cache_root=cache_root, show_progress=False, cache_max_bytes=150_000):
        sub = pos3.download(f"s3://{bucket}/data/sub")  # in use by this mirror: pinned
        pos3.download(f"s3://{bucket}/other")  # past the limit: something unpinned goes
        assert (sub / "x").read_bytes() == b"x" * 10


def test_eviction_never_deletes_pending_upload_results(s3: Any, bucket: str, cache_root: Path) -> None:
    put(s3, bucket, {"data/big": b"d" * 100_000, "other/blob": b"o" * 100_000})
    with pos3.mirror(cache_root=cache_root, show_progress=False):
        pos3.download(f"s3://{bucket}/data")
    with pos3.mirror(cache_root=cache_root, show_progress=False, cache_max_bytes=150_000):
        out = pos3.upload(f"s3://{bucket}/data/results", interval=None)
        (out / "metrics.json").write_bytes(b"{}")
        pos3.download(f"s3://{bucket}/other")
    assert remote_tree(s3, bucket, "data/results/") == {"data/results/metrics.json": b"{}"}


async def test_conflicting_sync_raises_before_transferring(open_mirror: Any, s3: Any, bucket: str,
                                                           server: CountingMotoServer, cache_root: Path) -> None:
    put(s3, bucket, {"data/sub/x": b"x", "data/y": b"y"})
    async with open_mirror() as m:
        await m.download(f"s3://{bucket}/data/sub")
        server.log.clear()
        with pytest.raises(ValueError):
            await m.sync(f"s3://{bucket}/data", interval=None)
        assert server.log.count() == 0
    assert not (cache_root / "_" / bucket / "data" / "y").exists()


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True
