"""The ``pos3`` command line, run as a real subprocess against the moto server.

Every test runs ``python -m pos3 ...`` with the environment the `server` fixture set up (the
endpoint, test credentials, an empty profile file), so the child talks to the same moto server
the test seeds and inspects with boto3. Pipes are not terminals, so no progress is shown unless
``--progress`` forces it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import pos3
from pos3.cli import build_parser
from tests.conftest import CountingMotoServer, local_tree, own_buckets, put, remote_tree
from tests.faults.proxy import FaultProxy, Scenario, make_rule

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, cache_root: Path, env: dict[str, str] | None = None, timeout: float = 60
        ) -> subprocess.CompletedProcess[str]:
    """``pos3 ARGS`` in a subprocess with ``cache_root`` as the default cache root."""
    full_env = dict(os.environ, POS3_CACHE_ROOT=str(cache_root), **(env or {}))
    full_env.pop("COLUMNS", None)
    return subprocess.run([sys.executable, "-m", "pos3", *args], capture_output=True, text=True, env=full_env,
                          timeout=timeout, check=False, cwd=ROOT)


def tree_snapshot(root: Path, skip: Path | None = None) -> dict[str, tuple[str, bytes | None]]:
    """Every entry below ``root`` (kind and bytes), except what lies below ``skip``."""
    out: dict[str, tuple[str, bytes | None]] = {}
    if not root.exists():
        return out
    for p in sorted(root.rglob("*")):
        if skip is not None and (p == skip or skip in p.parents):
            continue
        rel = p.relative_to(root).as_posix()
        out[rel] = ("dir", None) if p.is_dir() else ("file", p.read_bytes())
    return out


def bucket_snapshot(s3: Any, bucket: str) -> dict[str, tuple[str, bytes]]:
    out: dict[str, tuple[str, bytes]] = {}
    for key, data in remote_tree(s3, bucket).items():
        out[key] = (s3.head_object(Bucket=bucket, Key=key)["ETag"], data)
    return out


# ---------------------------------------------------------------------- basics


def test_version_and_help(server: CountingMotoServer, cache_root: Path) -> None:
    res = run("--version", cache_root=cache_root)
    assert res.returncode == 0
    assert res.stdout.strip() == f"pos3 {pos3.__version__}"
    for command in ("ls", "download", "upload", "sync"):
        res = run(command, "--help", cache_root=cache_root)
        assert res.returncode == 0, res.stderr
        assert res.stdout.startswith(f"usage: pos3 {command}")
        assert "examples:" in res.stdout
        assert f"pos3 {command} " in res.stdout.split("examples:")[1]


def test_usage_errors_exit_2(server: CountingMotoServer, cache_root: Path) -> None:
    for args in (["bogus"], [], ["download"], ["ls", "s3://b/x", "--no-such-option"]):
        res = run(*args, cache_root=cache_root)
        assert res.returncode == 2, (args, res.stderr)
        assert res.stdout == ""
        assert "usage: pos3" in res.stderr


# ---------------------------------------------------------------------- ls


def test_ls_one_url_per_line(server: CountingMotoServer, s3: Any, bucket: str, cache_root: Path) -> None:
    put(s3, bucket, {"data/a.txt": b"alpha", "data/sub/b.bin": b"x" * 3000, "data/sub/deep/c": b"c", "top": b"t"})
    res = run("ls", f"s3://{bucket}/data", cache_root=cache_root)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [f"s3://{bucket}/data/a.txt", f"s3://{bucket}/data/sub"]
    assert res.stderr == ""

    res = run("ls", "-r", f"s3://{bucket}/data/", cache_root=cache_root)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [  # objects only, as `aws s3 ls --recursive`
        f"s3://{bucket}/data/a.txt",
        f"s3://{bucket}/data/sub/b.bin",
        f"s3://{bucket}/data/sub/deep/c",
    ]

    res = run("ls", f"s3://{bucket}", cache_root=cache_root)
    assert res.stdout.splitlines() == [f"s3://{bucket}/data", f"s3://{bucket}/top"]


def test_ls_long_and_json(server: CountingMotoServer, s3: Any, bucket: str, cache_root: Path) -> None:
    put(s3, bucket, {"data/a.txt": b"alpha", "data/sub/b.bin": b"x" * 3000})
    res = run("ls", "-r", "--long", f"s3://{bucket}/data", cache_root=cache_root)
    assert res.returncode == 0, res.stderr
    rows = [line.split() for line in res.stdout.splitlines()]
    assert [r[-1] for r in rows] == [f"s3://{bucket}/data/a.txt", f"s3://{bucket}/data/sub/b.bin"]
    assert rows[0][-2] == "5" and rows[1][-2] == "3000"
    assert len(rows[0]) == 4  # date, time, size, URL
    rows = [line.split() for line in run("ls", "--long", f"s3://{bucket}/data", cache_root=cache_root
                                         ).stdout.splitlines()]
    assert rows[1] == ["DIR", f"s3://{bucket}/data/sub"]

    res = run("ls", "-r", "--json", f"s3://{bucket}/data", cache_root=cache_root)
    assert res.returncode == 0, res.stderr
    entries = json.loads(res.stdout)
    assert [(e["name"], e["type"], e["size"]) for e in entries] == [
        (f"s3://{bucket}/data/a.txt", "file", 5),
        (f"s3://{bucket}/data/sub/b.bin", "file", 3000),
    ]
    assert entries[0]["last_modified"]  # an ISO 8601 time
    entries = json.loads(run("ls", "--json", f"s3://{bucket}/data", cache_root=cache_root).stdout)
    assert entries[1]["type"] == "dir" and entries[1]["last_modified"] is None


def test_ls_local_path(server: CountingMotoServer, tmp_path: Path, cache_root: Path) -> None:
    folder = tmp_path / "here"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_bytes(b"12345")
    (folder / "sub" / "b").write_bytes(b"b")
    res = run("ls", str(folder), cache_root=cache_root)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [str(folder / "a.txt"), str(folder / "sub")]
    res = run("ls", "-r", "--json", str(folder), cache_root=cache_root)
    entries = json.loads(res.stdout)
    assert [(e["name"], e["type"], e["size"]) for e in entries] == [
        (str(folder / "a.txt"), "file", 5), (str(folder / "sub" / "b"), "file", 1)
    ]
    res = run("ls", str(tmp_path / "missing"), cache_root=cache_root)
    assert res.returncode == 1
    assert str(tmp_path / "missing") in res.stderr


# ---------------------------------------------------------------------- download


@pytest.mark.slow
def test_download_stdout_is_only_the_path(server: CountingMotoServer, s3: Any, bucket: str, cache_root: Path) -> None:
    put(s3, bucket, {"data/a.txt": b"alpha", "data/sub/b.bin": b"x" * 3000})
    res = run("download", f"s3://{bucket}/data/", cache_root=cache_root)
    assert res.returncode == 0, res.stderr
    expected = cache_root / "_" / bucket / "data"
    assert res.stdout == f"{expected}\n"
    # Not a terminal: no bar, only the one-line summary (files, bytes in binary units, time, rate).
    assert res.stderr.count("\n") == 1, res.stderr
    assert res.stderr.startswith(f"download s3://{bucket}/data") and ": 2 files, 2.93 KiB in " in res.stderr
    assert "KiB/s)" in res.stderr
    assert local_tree(Path(res.stdout.strip())) == {"a.txt": b"alpha", "sub/b.bin": b"x" * 3000}

    # --cache-root and --progress: the path moves, stdout stays clean, progress goes to stderr.
    other = cache_root.parent / "other-root"
    res = run("download", f"s3://{bucket}/data", "--cache-root", str(other), "--progress", cache_root=cache_root)
    assert res.returncode == 0, res.stderr
    assert res.stdout == f"{other / '_' / bucket / 'data'}\n"
    assert "100%" in res.stderr and "2/2 files" in res.stderr and "KiB" in res.stderr
    # -q silences progress even when forced.
    other2 = cache_root.parent / "other-root-2"
    res = run("download", f"s3://{bucket}/data", "--cache-root", str(other2), "--progress", "-q",
              cache_root=cache_root)
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""

    res = run("download", f"s3://{bucket}/data", "--json", cache_root=cache_root)
    assert json.loads(res.stdout) == {"url": f"s3://{bucket}/data", "local": str(expected)}


def test_download_local_delete_exclude(server: CountingMotoServer, s3: Any, bucket: str, tmp_path: Path,
                                       cache_root: Path) -> None:
    put(s3, bucket, {"data/a.txt": b"alpha", "data/skip.tmp": b"tmp", "data/b.txt": b"bravo"})
    target = tmp_path / "out"
    target.mkdir()
    (target / "extra.txt").write_bytes(b"mine")
    res = run("download", f"s3://{bucket}/data", "--local", str(target), "--exclude", "*.tmp", cache_root=cache_root)
    assert res.returncode == 0, res.stderr
    assert res.stdout == f"{target}\n"
    # --delete is off by default on the command line: the extra file stays.
    assert local_tree(target) == {"a.txt": b"alpha", "b.txt": b"bravo", "extra.txt": b"mine"}

    res = run("download", f"s3://{bucket}/data", "--local", str(target), "--exclude", "*.tmp", "--delete",
              cache_root=cache_root)
    assert res.returncode == 0, res.stderr
    assert local_tree(target) == {"a.txt": b"alpha", "b.txt": b"bravo"}


def test_verbose_logs_go_to_stderr(server: CountingMotoServer, s3: Any, bucket: str, cache_root: Path) -> None:
    put(s3, bucket, {"data/a.txt": b"alpha"})
    res = run("download", "-v", f"s3://{bucket}/data", cache_root=cache_root)
    assert res.returncode == 0, res.stderr
    assert res.stdout == f"{cache_root / '_' / bucket / 'data'}\n"
    assert f"download s3://{bucket}/data to" in res.stderr


# ---------------------------------------------------------------------- dry runs


def test_download_dry_run_changes_nothing(server: CountingMotoServer, s3: Any, bucket: str, tmp_path: Path,
                                          cache_root: Path) -> None:
    put(s3, bucket, {"data/keep.txt": b"same", "data/gone.txt": b"will vanish locally", "data/edit.txt": b"v1"})
    url = f"s3://{bucket}/data"
    assert run("download", url, cache_root=cache_root).returncode == 0
    local = cache_root / "_" / bucket / "data"
    (local / "gone.txt").unlink()                           # missing: was in sync, now absent locally
    (local / "extra.txt").write_bytes(b"local only")        # deleted with --delete
    put(s3, bucket, {"data/edit.txt": b"v2 longer", "data/new.txt": b"fresh"})  # changed remotely, new

    private = cache_root / ".pos3"
    before_fs, before_s3 = tree_snapshot(tmp_path, skip=private), bucket_snapshot(s3, bucket)
    writes_before = server.log.count("PUT") + server.log.count("DELETE") + server.log.count("POST")
    res = run("download", url, "--dry-run", "--delete", cache_root=cache_root)
    assert res.returncode == 0, res.stderr
    assert sorted(res.stdout.splitlines()) == sorted([
        f"(dryrun) download: s3://{bucket}/data/edit.txt to {local / 'edit.txt'} (changed remotely)",
        f"(dryrun) download: s3://{bucket}/data/gone.txt to {local / 'gone.txt'} (missing)",
        f"(dryrun) download: s3://{bucket}/data/new.txt to {local / 'new.txt'} (new)",
        f"(dryrun) delete: {local / 'extra.txt'} (absent from source)",
    ])
    res_json = run("download", url, "-n", "--delete", "--json", cache_root=cache_root)
    assert res_json.returncode == 0, res_json.stderr
    plan = json.loads(res_json.stdout)
    assert plan["dry_run"] is True and plan["operation"] == "download" and plan["local"] == str(local)
    assert plan["to_copy"] == 3 and plan["to_delete"] == 1
    assert plan["total_bytes"] == len(b"v2 longer") + len(b"will vanish locally") + len(b"fresh")
    assert {(a["action"], a["dst"], a["reason"]) for a in plan["actions"]} == {
        ("copy", str(local / "edit.txt"), "changed remotely"),
        ("copy", str(local / "gone.txt"), "missing"),
        ("copy", str(local / "new.txt"), "new"),
        ("delete", str(local / "extra.txt"), "absent from source"),
    }
    # The disk (except pos3's own bookkeeping under .pos3) and the bucket are exactly as before.
    assert tree_snapshot(tmp_path, skip=private) == before_fs
    assert bucket_snapshot(s3, bucket) == before_s3
    assert server.log.count("PUT") + server.log.count("DELETE") + server.log.count("POST") == writes_before


def test_dry_run_on_a_fresh_cache_creates_no_mirror(server: CountingMotoServer, s3: Any, bucket: str,
                                                     cache_root: Path) -> None:
    put(s3, bucket, {"data/a.txt": b"alpha"})
    res = run("download", f"s3://{bucket}/data", "-n", cache_root=cache_root)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [
        f"(dryrun) download: s3://{bucket}/data/a.txt to {cache_root / '_' / bucket / 'data' / 'a.txt'} (new)"
    ]
    assert not (cache_root / "_").exists()


def test_upload_dry_run_changes_nothing(server: CountingMotoServer, s3: Any, bucket: str, tmp_path: Path,
                                        cache_root: Path) -> None:
    put(s3, bucket, {"out/same.txt": b"same", "out/stale.txt": b"old", "out/orphan.txt": b"only remote"})
    src = tmp_path / "src"
    src.mkdir()
    (src / "same.txt").write_bytes(b"same")
    (src / "stale.txt").write_bytes(b"new content")
    (src / "fresh.txt").write_bytes(b"fresh")
    url = f"s3://{bucket}/out"

    before_fs, before_s3 = tree_snapshot(src), bucket_snapshot(s3, bucket)
    res = run("upload", url, "--local", str(src), "-n", "--delete", cache_root=cache_root)
    assert res.returncode == 0, res.stderr
    assert sorted(res.stdout.splitlines()) == sorted([
        f"(dryrun) upload: {src / 'fresh.txt'} to s3://{bucket}/out/fresh.txt (new)",
        f"(dryrun) upload: {src / 'stale.txt'} to s3://{bucket}/out/stale.txt (changed)",
        f"(dryrun) delete: s3://{bucket}/out/orphan.txt (absent from source)",
    ])
    res = run("upload", url, "--local", str(src), "--dry-run", "--json", cache_root=cache_root)
    plan = json.loads(res.stdout)
    assert plan["operation"] == "upload" and plan["to_delete"] == 0  # no --delete: nothing deleted
    assert {(a["direction"], a["src"], a["dst"], a["reason"]) for a in plan["actions"]} == {
        ("upload", str(src / "fresh.txt"), f"s3://{bucket}/out/fresh.txt", "new"),
        ("upload", str(src / "stale.txt"), f"s3://{bucket}/out/stale.txt", "changed"),
    }
    assert tree_snapshot(src) == before_fs
    assert bucket_snapshot(s3, bucket) == before_s3


# ---------------------------------------------------------------------- upload and sync


def test_upload_one_shot(server: CountingMotoServer, s3: Any, bucket: str, tmp_path: Path, cache_root: Path) -> None:
    put(s3, bucket, {"out/orphan.txt": b"only remote"})
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_bytes(b"alpha")
    (src / "sub" / "b.txt").write_bytes(b"bravo")
    url = f"s3://{bucket}/out"
    res = run("upload", url, "--local", str(src), cache_root=cache_root)
    assert res.returncode == 0, res.stderr
    assert res.stdout == f"{url}\n"
    assert remote_tree(s3, bucket) == {"out/orphan.txt": b"only remote", "out/a.txt": b"alpha",
                                       "out/sub/b.txt": b"bravo"}
    res = run("upload", url, "--local", str(src), "--delete", "--json", cache_root=cache_root)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == {"url": url, "local": str(src)}
    assert remote_tree(s3, bucket) == {"out/a.txt": b"alpha", "out/sub/b.txt": b"bravo"}


def test_upload_defaults_to_the_download_path(server: CountingMotoServer, s3: Any, bucket: str,
                                              cache_root: Path) -> None:
    url = f"s3://{bucket}/data"
    res = run("upload", url, cache_root=cache_root)
    assert res.returncode == 1
    cache_path = cache_root / "_" / bucket / "data"
    assert str(cache_path) in res.stderr and "does not exist" in res.stderr
    assert res.stdout == ""
    assert not cache_path.exists()  # the failed upload created nothing

    put(s3, bucket, {"data/a.txt": b"alpha"})
    local = Path(run("download", url, cache_root=cache_root).stdout.strip())
    assert local == cache_path
    (local / "result.txt").write_bytes(b"computed")
    res = run("upload", url, cache_root=cache_root)
    assert res.returncode == 0, res.stderr
    assert remote_tree(s3, bucket) == {"data/a.txt": b"alpha", "data/result.txt": b"computed"}


@pytest.mark.slow
def test_sync_downloads_then_uploads_once(server: CountingMotoServer, s3: Any, bucket: str, tmp_path: Path,
                                          cache_root: Path) -> None:
    put(s3, bucket, {"job/remote.txt": b"from s3", "job/both.txt": b"remote wins"})
    work = tmp_path / "work"
    work.mkdir()
    (work / "local.txt").write_bytes(b"from disk")
    (work / "both.txt").write_bytes(b"local loses")
    url = f"s3://{bucket}/job"

    before_fs, before_s3 = tree_snapshot(work), bucket_snapshot(s3, bucket)
    # The dry run plans what sync does: local work is kept (even with --delete) and uploaded, and
    # both.txt, never in sync and different on both sides, is a conflict that would stop the sync.
    expected_plan = [
        f"(dryrun) conflict: {work / 'both.txt'} (changed locally and in S3 since the last sync; "
        "the download would stop)",
        f"(dryrun) download: s3://{bucket}/job/remote.txt to {work / 'remote.txt'} (new)",
        f"(dryrun) upload: {work / 'local.txt'} to s3://{bucket}/job/local.txt (new)",
    ]
    kept = f"(dryrun) keep: {work / 'local.txt'} (local work, left for the upload)"  # --delete would remove it
    for flags, extra in (([], []), (["--delete"], [kept])):
        res = run("sync", url, "--local", str(work), "-n", *flags, cache_root=cache_root)
        assert res.returncode == 0, res.stderr
        assert sorted(res.stdout.splitlines()) == sorted(expected_plan + extra)
        assert "1 conflicts (the sync would stop, changing nothing)" in res.stderr
    # An empty prefix: nothing to download, everything local to upload.
    res = run("sync", f"s3://{bucket}/other-job", "--local", str(work), "-n", "--json", cache_root=cache_root)
    assert res.returncode == 0, res.stderr
    assert {(a["direction"], a["reason"]) for a in json.loads(res.stdout)["actions"]} == {("upload", "new")}
    assert tree_snapshot(work) == before_fs and bucket_snapshot(s3, bucket) == before_s3

    # both.txt was never in sync and differs on both sides: a conflict; nothing changes (issue 12).
    res = run("sync", url, "--local", str(work), cache_root=cache_root)
    assert res.returncode == 1 and "both.txt" in res.stderr and "changed locally and in S3" in res.stderr
    assert tree_snapshot(work) == before_fs and bucket_snapshot(s3, bucket) == before_s3
    (work / "both.txt").unlink()  # take the version in S3
    res = run("sync", url, "--local", str(work), cache_root=cache_root)
    assert res.returncode == 0, res.stderr
    assert res.stdout == f"{work}\n"
    expected = {"remote.txt": b"from s3", "both.txt": b"remote wins", "local.txt": b"from disk"}
    assert local_tree(work) == expected
    assert remote_tree(s3, bucket) == {f"job/{k}": v for k, v in expected.items()}

    # An empty prefix is a job's first run: fine for sync.
    fresh = tmp_path / "fresh"
    res = run("sync", f"s3://{bucket}/new-job", "--local", str(fresh), cache_root=cache_root)
    assert res.returncode == 0, res.stderr
    assert fresh.is_dir()


# ---------------------------------------------------------------------- errors


@pytest.mark.parametrize("command", ["download", "upload", "sync"])
def test_transfers_need_an_s3_url(server: CountingMotoServer, tmp_path: Path, cache_root: Path,
                                  command: str) -> None:
    for bad in ("data/x", str(tmp_path), "http://bucket/key", "S3://bucket/key", "s3:/bucket/key", "s3://"):
        res = run(command, bad, cache_root=cache_root)
        assert res.returncode == 2, (bad, res.stderr)
        assert res.stdout == ""
        assert bad in res.stderr and "s3://" in res.stderr
        assert "Traceback" not in res.stderr
    assert server.log.count() == 0
    assert not cache_root.exists()


def test_unknown_profile_is_a_usage_error(server: CountingMotoServer, bucket: str, cache_root: Path) -> None:
    res = run("download", f"s3://{bucket}/data", "--profile", "no-such-profile", cache_root=cache_root)
    assert res.returncode == 2
    assert "no-such-profile" in res.stderr
    res = run("ls", f"s3://no-such-profile@{bucket}/data", cache_root=cache_root)
    assert res.returncode == 2
    assert "no-such-profile" in res.stderr


@pytest.mark.slow
def test_s3_errors_exit_1(server: CountingMotoServer, bucket: str, tmp_path: Path, cache_root: Path) -> None:
    res = run("download", "s3://no-such-bucket-here/data", cache_root=cache_root)
    assert res.returncode == 1
    assert "s3://no-such-bucket-here/" in res.stderr and "does not exist" in res.stderr
    assert res.stdout == "" and "Traceback" not in res.stderr

    res = run("download", f"s3://{bucket}/empty-prefix", cache_root=cache_root)
    assert res.returncode == 1
    assert f"s3://{bucket}/empty-prefix" in res.stderr

    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_bytes(b"a")
    res = run("upload", "s3://no-such-bucket-here/out", "--local", str(src), cache_root=cache_root)
    assert res.returncode == 1
    assert "s3://no-such-bucket-here/out" in res.stderr


def test_transfer_failures_exit_1_and_name_the_keys(server: CountingMotoServer, s3: Any, bucket: str,
                                                    cache_root: Path) -> None:
    put(s3, bucket, {"data/good.txt": b"fine"})
    # A wrong pos3 fingerprint makes this one object fail its integrity check; the others still land.
    s3.put_object(Bucket=bucket, Key="data/bad.bin", Body=b"x" * 100, Metadata={"pos3-xxh3": "0" * 16})
    res = run("download", f"s3://{bucket}/data", cache_root=cache_root)
    assert res.returncode == 1
    assert res.stdout == ""
    assert "download failed for 1 object" in res.stderr
    assert f"s3://{bucket}/data/bad.bin" in res.stderr
    assert "good.txt" not in res.stderr
    assert local_tree(cache_root / "_" / bucket / "data") == {"good.txt": b"fine"}


# ---------------------------------------------------------------------- Ctrl-C

# Python leaves SIGINT ignored in a child whose parent ignored it (a CI job in the background);
# the wrapper restores the default handler so the test does not depend on how pytest was started.
_WITH_SIGINT = ("import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
                "runpy.run_module('pos3', run_name='__main__', alter_sys=True)")


@pytest.mark.parametrize("size", [4 << 20, 33 << 20], ids=["streamed", "ranged"])
def test_ctrl_c_exits_130_and_leaves_no_partial_file(server: CountingMotoServer, s3: Any, bucket: str,
                                                     cache_root: Path, size: int) -> None:
    """Ctrl-C in the middle of a download: exit 130, nothing partial left in the target or staging.

    4 MiB is streamed into a staging file as it arrives; 33 MiB is fetched in ranged parts into a
    staging file that exists, at full size, from the first request on.
    """
    s3.put_object(Bucket=bucket, Key="big/blob.bin", Body=os.urandom(size))
    # The proxy sends 16 KiB of the object, then waits 30 s before each further chunk: the
    # transfer has started and cannot finish before the interrupt, whatever the machine's speed.
    proxy = FaultProxy(server.endpoint, Scenario(make_rule("latency", delay=30.0, method="GET", path="blob.bin")),
                       upstream_ca=server.ca_bundle)
    proxy.start()
    staging = cache_root / ".pos3" / "staging"
    target = cache_root / "_" / bucket / "big"

    def started() -> bool:
        if size < 32 << 20:
            return proxy.count(method="GET", path="blob.bin") > 0
        return any(p.is_file() and p.stat().st_size > 0 for p in staging.rglob("*.part"))

    env = dict(os.environ, POS3_CACHE_ROOT=str(cache_root), AWS_ENDPOINT_URL=proxy.url)
    proc = subprocess.Popen([sys.executable, "-c", _WITH_SIGINT, "download", f"s3://{bucket}/big"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while not started():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the download never started"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        proxy.stop()
    assert proc.returncode == 130, err
    assert out == ""
    assert "interrupted" in err and "Traceback" not in err
    assert [p for p in staging.rglob("*") if p.is_file()] == []
    assert not target.exists() or [p for p in target.rglob("*") if p.is_file()] == []


# ---------------------------------------------------------------------- docs/cli.md


def _gen_cli() -> Any:
    spec = importlib.util.spec_from_file_location("gen_cli", ROOT / "docs" / "gen_cli.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_cli_page_is_generated_from_the_parser() -> None:
    page = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert page == _gen_cli().render(), "docs/cli.md is stale: run python docs/gen_cli.py"


def test_docs_cli_page_matches_help_output(server: CountingMotoServer, cache_root: Path) -> None:
    """Every option and help text of every subcommand's --help is on the page, and nothing else."""
    page = " ".join((ROOT / "docs" / "cli.md").read_text(encoding="utf-8").split())
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(commands.choices) == {"ls", "download", "upload", "sync", "cache"}
    cache = next(a for a in commands.choices["cache"]._actions if isinstance(a, argparse._SubParsersAction))
    every = [(name, sub) for name, sub in commands.choices.items()]
    every += [(f"cache {name}", sub) for name, sub in cache.choices.items()]
    for name, sub in every:
        shown = " ".join(run(*name.split(), "--help", cache_root=cache_root).stdout.split())
        assert f"## `pos3 {name}`" in page
        for action in sub._actions:
            if action.help is None or action.option_strings == ["-h", "--help"]:
                continue
            text = " ".join(action.help.split())
            assert text in shown, (name, text)
            assert text.replace("|", "\\|") in page, (name, text)
            for option in action.option_strings:
                assert option in shown and f"`{option}" in page, (name, option)
        for line in (sub.epilog or "").splitlines():
            assert line.strip() in shown and line.strip() in page


# ---------------------------------------------------------------------- training-job features


@pytest.mark.slow
def test_download_shard_and_upload_atomic(s3: Any, bucket: str, cache_root: Path, tmp_path: Path) -> None:
    put(s3, bucket, {f"ds/f{i}": b"x" * (i + 1) for i in range(6)})
    got: list[set[str]] = []
    for rank in range(2):
        res = run("download", f"s3://{bucket}/ds", "--local", str(tmp_path / f"r{rank}"), "--shard", f"{rank}/2",
                  cache_root=cache_root)
        assert res.returncode == 0, res.stderr
        got.append(set(local_tree(Path(res.stdout.strip()))))
    assert got[0].isdisjoint(got[1]) and got[0] | got[1] == {f"f{i}" for i in range(6)}
    assert run("download", f"s3://{bucket}/ds", "--shard", "2/2", cache_root=cache_root).returncode == 2

    src = tmp_path / "ckpt"
    src.mkdir()
    (src / "model.pt").write_bytes(b"weights")
    res = run("upload", f"s3://{bucket}/ck", "--local", str(src), "--atomic", cache_root=cache_root)
    assert res.returncode == 0, res.stderr
    assert any(k.startswith("ck/.pos3/commits/") for k in remote_tree(s3, bucket, "ck/"))
    res = run("download", f"s3://{bucket}/ck", "--local", str(tmp_path / "back"), cache_root=cache_root)
    assert local_tree(Path(res.stdout.strip())) == {"model.pt": b"weights"}


@pytest.mark.slow
def test_cache_ls_and_prune(s3: Any, bucket: str, cache_root: Path) -> None:
    put(s3, bucket, {"a/blob": b"a" * 1000, "b/blob": b"b" * 2000})
    for prefix in ("a", "b"):
        assert run("download", f"s3://{bucket}/{prefix}", cache_root=cache_root).returncode == 0
    res = run("cache", "ls", "--json", cache_root=cache_root)
    assert res.returncode == 0, res.stderr
    trees = json.loads(res.stdout)
    assert [(Path(t["path"]).name, t["bytes"], t["pinned"], t["inside"]) for t in trees] == [
        ("a", 1000, False, None), ("b", 2000, False, None)]
    res = run("cache", "ls", cache_root=cache_root)
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["LAST", "USED", "(UTC)", "SIZE", "PINNED", "PATH"]
    assert "1000 B" in lines[1] and "1.95 KiB" in lines[2] and "no" in lines[1].split()
    assert "2.93 KiB" in res.stderr
    res = run("cache", "ls", "--profile", "x", cache_root=cache_root)
    assert res.returncode == 2 and "--profile" in res.stderr  # the cache is local: no profile option
    res = run("cache", "prune", "--max-bytes", "2500", "--dry-run", cache_root=cache_root)
    assert res.returncode == 0 and "evict" in res.stdout and (cache_root / "_" / bucket / "a").exists()
    res = run("cache", "prune", "--max-bytes", "2500", cache_root=cache_root)
    assert res.returncode == 0, res.stderr
    assert not (cache_root / "_" / bucket / "a").exists()
    assert (cache_root / "_" / bucket / "b" / "blob").exists()
    assert run("cache", "prune", "--max-bytes", "lots", cache_root=cache_root).returncode == 2


# ---------------------------------------------------------------------- habits of aws s3 / rclone


@pytest.mark.slow
def test_positional_destination_source_first(s3: Any, bucket: str, tmp_path: Path, cache_root: Path) -> None:
    put(s3, bucket, {"ds/a.txt": b"alpha", "ds/sub/b.txt": b"bravo"})
    dest = tmp_path / "dir"
    res = run("download", f"s3://{bucket}/ds/", str(dest), cache_root=cache_root)
    assert res.returncode == 0, res.stderr
    assert res.stdout == f"{dest}\n"
    assert local_tree(dest) == {"a.txt": b"alpha", "sub/b.txt": b"bravo"}

    (dest / "c.txt").write_bytes(b"charlie")
    res = run("upload", str(dest), f"s3://{bucket}/copy/", cache_root=cache_root)
    assert res.returncode == 0, res.stderr
    assert remote_tree(s3, bucket, "copy/") == {"copy/a.txt": b"alpha", "copy/sub/b.txt": b"bravo",
                                                "copy/c.txt": b"charlie"}
    res = run("sync", f"s3://{bucket}/copy/", str(tmp_path / "synced"), cache_root=cache_root)
    assert res.returncode == 0, res.stderr
    assert local_tree(tmp_path / "synced") == {"a.txt": b"alpha", "sub/b.txt": b"bravo", "c.txt": b"charlie"}

    res = run("upload", str(dest / "c.txt"), f"s3://{bucket}/files/", cache_root=cache_root)
    assert res.returncode == 0, res.stderr
    assert res.stdout == f"s3://{bucket}/files/c.txt\n"
    assert remote_tree(s3, bucket, "files/") == {"files/c.txt": b"charlie"}

    # The wrong order for upload, or two different local paths, are usage errors that change nothing.
    before = bucket_snapshot(s3, bucket)
    res = run("upload", f"s3://{bucket}/copy/", str(dest), cache_root=cache_root)
    assert res.returncode == 2 and "LOCAL then URL" in res.stderr
    res = run("download", f"s3://{bucket}/ds/", str(dest), "--local", str(tmp_path / "other"), cache_root=cache_root)
    assert res.returncode == 2 and "twice" in res.stderr
    assert bucket_snapshot(s3, bucket) == before and not (tmp_path / "other").exists()


def test_an_empty_local_path_is_a_usage_error(s3: Any, bucket: str, tmp_path: Path, cache_root: Path) -> None:
    # An unset shell variable: `pos3 download URL --local "$DIR" --delete` must never mean "here".
    put(s3, bucket, {"ds/a.txt": b"alpha"})
    here = tmp_path / "cwd"
    here.mkdir()
    (here / "precious.txt").write_bytes(b"mine")
    full_env = dict(os.environ, POS3_CACHE_ROOT=str(cache_root))
    for args in (["download", f"s3://{bucket}/ds", "--local", "", "--delete"],
                 ["download", f"s3://{bucket}/ds", "", "--delete"],
                 ["sync", f"s3://{bucket}/ds", "--local", "", "--delete"],
                 ["upload", "", f"s3://{bucket}/ds", "--delete"]):
        res = subprocess.run([sys.executable, "-m", "pos3", *args], capture_output=True, text=True, env=full_env,
                             timeout=60, check=False, cwd=here)
        assert res.returncode == 2, (args, res.stderr)
        assert "empty" in res.stderr and res.stdout == ""
    assert local_tree(here) == {"precious.txt": b"mine"}
    assert remote_tree(s3, bucket) == {"ds/a.txt": b"alpha"}


@pytest.mark.slow
def test_ls_exit_codes_are_consistent(s3: Any, bucket: str, tmp_path: Path, cache_root: Path) -> None:
    put(s3, bucket, {"ds/a.txt": b"alpha"})
    res = run("ls", f"s3://{bucket}/nothing-here/", cache_root=cache_root)
    assert res.returncode == 1 and f"s3://{bucket}/nothing-here/: no objects" in res.stderr
    res = run("ls", str(tmp_path / "no-such-folder"), cache_root=cache_root)
    assert res.returncode == 1 and "no such file or folder" in res.stderr
    s3.create_bucket(Bucket=f"{bucket}-empty")
    res = run("ls", f"s3://{bucket}-empty", cache_root=cache_root)
    assert res.returncode == 0 and res.stdout == ""  # an empty bucket is listed as empty


def test_ls_s3_lists_the_buckets(server: CountingMotoServer, s3: Any, bucket: str, cache_root: Path) -> None:
    s3.create_bucket(Bucket=f"{bucket}-2")
    res = run("ls", "s3://", cache_root=cache_root)
    assert res.returncode == 0, res.stderr
    assert own_buckets(res.stdout.splitlines(), bucket, server) == [f"s3://{bucket}", f"s3://{bucket}-2"]
    res = run("ls", "--json", "s3://", cache_root=cache_root)
    names = [e["name"] for e in json.loads(res.stdout)]
    assert own_buckets(names, bucket, server) == [f"s3://{bucket}", f"s3://{bucket}-2"]


def test_stall_timeout_flag_reaches_the_mirror() -> None:
    from pos3._cli_run import _open

    args = build_parser().parse_args(["download", "s3://b/k", "--stall-timeout", "2.5", "-q"])
    assert args.stall_timeout == 2.5
    assert _open(args)._options.retry.stall_timeout == 2.5
    default = build_parser().parse_args(["download", "s3://b/k", "-q"])
    assert _open(default)._options.retry.stall_timeout == 15.0
    with pytest.raises(SystemExit):
        build_parser().parse_args(["download", "s3://b/k", "--stall-timeout", "0"])
