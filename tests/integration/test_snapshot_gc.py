"""Two publishers of one prefix: one's garbage collection never removes the other's uncommitted work."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pos3._hashing import Hasher
from tests.conftest import local_tree, remote_tree

pytestmark = pytest.mark.anyio


def _xxh3(data: bytes) -> str:
    h = Hasher()
    h.update(data)
    return h.xxh3


async def test_a_publish_spares_objects_another_publisher_has_not_committed_yet(
    open_mirror: Any, s3: Any, bucket: str, tmp_path: Path
) -> None:
    src = tmp_path / "a"
    src.mkdir()
    # Publisher B (another job) has uploaded its object and not written its commit yet.
    theirs = b"publisher B's model, uploaded, commit not written yet"
    blob = f"snap/.pos3/objects/{_xxh3(theirs)}"
    s3.put_object(Bucket=bucket, Key=blob, Body=theirs)
    # Publisher A publishes three times: each publish after the first collects garbage, and the
    # third drops commit 1 and its objects.
    for version in (b"one", b"two", b"three"):
        (src / "model.pt").write_bytes(version * 100)
        async with open_mirror() as m:
            await m.upload(f"s3://{bucket}/snap", local=src, interval=None, atomic=True)
    remote = remote_tree(s3, bucket, "snap/.pos3/")
    assert sorted(k for k in remote if "/commits/" in k) == [
        "snap/.pos3/commits/000000000002.json", "snap/.pos3/commits/000000000003.json"]
    assert f"snap/.pos3/objects/{_xxh3(b'one' * 100)}" not in remote  # A's own superseded object went
    assert remote[blob] == theirs  # B's uncommitted object was spared (younger than the grace period)
    # B writes its commit: readers get B's snapshot, complete.
    s3.put_object(Bucket=bucket, Key="snap/.pos3/commits/000000000004.json", Body=json.dumps(
        {"format": "pos3-snapshot/1", "seq": 4, "files": {"model.pt": {"xxh3": _xxh3(theirs), "size": len(theirs)}},
         "dirs": []}).encode())
    async with open_mirror() as m:
        got = await m.download(f"s3://{bucket}/snap", local=tmp_path / "reader")
    assert local_tree(Path(got)) == {"model.pt": theirs}
