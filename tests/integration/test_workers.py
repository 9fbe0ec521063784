"""Requests in flight: chosen by default, ``max_workers`` / ``--workers`` when given."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import pos3
from tests.conftest import CountingMotoServer, local_tree, put, remote_tree

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str, cache_root: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, POS3_CACHE_ROOT=str(cache_root))
    return subprocess.run([sys.executable, "-m", "pos3", *args], capture_output=True, text=True, env=env,
                          timeout=120, check=False, cwd=ROOT)


@pytest.mark.parametrize("bad", [0, -1, True, 2.5, "8"])
def test_max_workers_must_be_a_positive_integer_or_none(bad: Any, cache_root: Path) -> None:
    with pytest.raises(ValueError, match="max_workers"):
        pos3.amirror(cache_root=cache_root, max_workers=bad)


@pytest.mark.anyio
@pytest.mark.parametrize("workers", [None, 1, 3])
async def test_transfers_complete_with_any_number_of_workers(
    open_mirror: Callable[..., Any], server: CountingMotoServer, s3: Any, bucket: str, tmp_path: Path,
    workers: int | None,
) -> None:
    files = {f"in/f{i:02d}.bin": bytes([i]) * (100 + i) for i in range(40)}
    put(s3, bucket, files)
    src = tmp_path / "src"
    src.mkdir()
    for i in range(30):
        (src / f"u{i:02d}.txt").write_bytes(b"u" * i)
    async with open_mirror(max_workers=workers) as m:
        got = await m.download(f"s3://{bucket}/in/", tmp_path / "dl")
        await m.upload(f"s3://{bucket}/out/", src, interval=None)
    assert local_tree(got) == {k.removeprefix("in/"): v for k, v in files.items()}
    assert remote_tree(s3, bucket, "out/") == {f"out/u{i:02d}.txt": b"u" * i for i in range(30)}


@pytest.mark.slow
def test_cli_workers(server: CountingMotoServer, s3: Any, bucket: str, tmp_path: Path, cache_root: Path) -> None:
    put(s3, bucket, {f"d/f{i}.txt": b"x" * i for i in range(12)})
    res = _cli("download", f"s3://{bucket}/d/", "--local", str(tmp_path / "d"), "--workers", "2", cache_root=cache_root)
    assert res.returncode == 0, res.stderr
    assert local_tree(tmp_path / "d") == {f"f{i}.txt": b"x" * i for i in range(12)}
    for bad in ("0", "many"):
        res = _cli("download", f"s3://{bucket}/d/", "--workers", bad, cache_root=cache_root)
        assert res.returncode == 2
        assert "--workers" in res.stderr and repr(bad) in res.stderr
