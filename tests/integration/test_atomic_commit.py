"""Conditional commits: two publishers of one atomic prefix never lose a publish silently.

Regression test of issue 12, item 7: both writers listed the prefix, picked the same commit
number, and the later PUT replaced the earlier commit.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

import pos3
from pos3._transfer import publish
from tests.conftest import local_tree


def commits(s3: Any, bucket: str, prefix: str) -> dict[int, dict[str, Any]]:
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/.pos3/commits/").get("Contents", [])
    out = {}
    for obj in listed:
        body = json.loads(s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read())
        out[int(body["seq"])] = body
    return out


async def publish_folder(m: Any, bucket: str, local: Path, files: dict[str, str]) -> None:
    out = await m.upload(f"s3://{bucket}/ckpt", local=local, interval=None, atomic=True)
    for name, text in files.items():
        (out / name).write_text(text)


@pytest.mark.anyio
async def test_a_commit_taken_meanwhile_is_kept_and_the_publish_takes_the_next_number(
    open_mirror: Any, s3: Any, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with open_mirror(cache_root=tmp_path / "w0") as m:
        await publish_folder(m, bucket, tmp_path / "w0-out", {"model.pt": "v0"})
    first = commits(s3, bucket, "ckpt")[1]

    # Another publisher commits number 2 after this one listed the prefix (same objects, other name).
    original = publish._newest_snapshot
    injected: list[int] = []

    async def listed_then_overtaken(*args: Any, **kwargs: Any) -> Any:
        found = await original(*args, **kwargs)
        if not injected:
            other = dict(first, seq=2, files={"model-by-b.pt": first["files"]["model.pt"]})
            s3.put_object(Bucket=bucket, Key="ckpt/.pos3/commits/000000000002.json", Body=json.dumps(other))
            injected.append(2)
        return found

    monkeypatch.setattr(publish, "_newest_snapshot", listed_then_overtaken)
    async with open_mirror(cache_root=tmp_path / "wA") as m:
        await publish_folder(m, bucket, tmp_path / "wA-out", {"model.pt": "by A"})
    monkeypatch.setattr(publish, "_newest_snapshot", original)

    found = commits(s3, bucket, "ckpt")
    assert sorted(found) == [2, 3]  # commit 1 collected; the other publisher's commit 2 kept
    assert set(found[2]["files"]) == {"model-by-b.pt"}
    assert set(found[3]["files"]) == {"model.pt"}  # this publish, as the next number
    async with open_mirror(cache_root=tmp_path / "reader") as m:
        assert local_tree(await m.download(f"s3://{bucket}/ckpt")) == {"model.pt": b"by A"}


@pytest.mark.anyio
async def test_two_publishers_racing_for_one_number_both_commit(
    s3: Any, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The repro: two writers (separate caches, so no shared lock) both list before either commits."""
    async with pos3.amirror(cache_root=tmp_path / "w0", show_progress=False) as m:
        await publish_folder(m, bucket, tmp_path / "w0-out", {"model.pt": "v0"})
    original = publish._newest_snapshot
    listed = 0
    both = anyio.Event()

    async def held_until_both_listed(*args: Any, **kwargs: Any) -> Any:
        nonlocal listed
        found = await original(*args, **kwargs)
        listed += 1
        if listed == 2:
            both.set()
        with anyio.fail_after(30):
            await both.wait()
        return found

    monkeypatch.setattr(publish, "_newest_snapshot", held_until_both_listed)

    async def writer(name: str) -> None:
        async with pos3.amirror(cache_root=tmp_path / name, show_progress=False) as m:
            await publish_folder(m, bucket, tmp_path / f"{name}-out", {"model.pt": f"by {name}"})

    async with anyio.create_task_group() as tg:
        tg.start_soon(writer, "wA")
        tg.start_soon(writer, "wB")
    monkeypatch.setattr(publish, "_newest_snapshot", original)

    found = commits(s3, bucket, "ckpt")
    assert sorted(found)[-2:] == [2, 3]  # two commits, one per publisher: neither was replaced
    contents = {
        s3.get_object(Bucket=bucket, Key=f"ckpt/.pos3/objects/{found[n]['files']['model.pt']['xxh3']}")["Body"]
        .read() for n in (2, 3)
    }
    assert contents == {b"by wA", b"by wB"}
