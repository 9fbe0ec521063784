"""Features for training jobs: sharded downloads, quiescent background uploads."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.conftest import local_tree, put, remote_tree

pytestmark = pytest.mark.anyio


async def test_shards_are_disjoint_cover_and_balanced(open_mirror: Any, s3: Any, bucket: str, tmp_path: Path) -> None:
    sizes = [1, 5, 9, 13, 200, 7, 3, 150, 64, 64, 32, 8, 1000, 2, 77, 300, 11, 450]
    put(s3, bucket, {f"ds/part-{i:02}": bytes([i]) * n for i, n in enumerate(sizes)})
    world = 3
    shards: list[dict[str, bytes]] = []
    for rank in range(world):  # one job per rank, as on the nodes of a distributed job
        async with open_mirror() as m:
            path = await m.download(f"s3://{bucket}/ds", local=tmp_path / f"rank{rank}", shard=(rank, world))
            shards.append(local_tree(path))
    async with open_mirror() as m:
        with pytest.raises(ValueError, match="rank"):
            await m.download(f"s3://{bucket}/ds", local=tmp_path / "bad", shard=(3, 3))
    names = [set(s) for s in shards]
    assert set().union(*names) == {f"part-{i:02}" for i in range(len(sizes))}
    assert sum(len(n) for n in names) == len(sizes)  # disjoint
    loads = [sum(len(v) for v in s.values()) for s in shards]
    assert max(loads) - min(loads) <= max(sizes)
    # Deterministic: the same rank gets the same files again (nothing to transfer, nothing deleted).
    async with open_mirror() as m:
        plan = await m.plan_download(f"s3://{bucket}/ds", local=tmp_path / "rank1", shard=(1, world))
    assert plan.actions == ()


async def test_background_upload_never_sends_a_file_still_being_written(
    open_mirror: Any, s3: Any, bucket: str
) -> None:
    rest_states: list[bytes] = []
    seen: set[bytes] = set()
    async with open_mirror() as m:
        out = await m.upload(f"s3://{bucket}/ckpt", interval=0.1, settle=0.5)
        target = out / "model.bin"
        stop = threading.Event()

        def writer() -> None:
            content = b""
            for phase in range(2):
                for i in range(40):  # ~0.8 s of appends: never at rest long enough to be sent
                    chunk = bytes([phase * 40 + i]) * 4096
                    with open(target, "ab") as fh:
                        fh.write(chunk)
                    content += chunk
                    time.sleep(0.02)
                rest_states.append(content)
                if phase == 0:
                    time.sleep(1.5)  # at rest: a background sync may send this state
            stop.set()

        thread = threading.Thread(target=writer)
        thread.start()
        with anyio.fail_after(30):
            while not stop.is_set():
                objects = remote_tree(s3, bucket, "ckpt/")
                if "ckpt/model.bin" in objects:
                    seen.add(objects["ckpt/model.bin"])
                await anyio.sleep(0.05)
        thread.join(timeout=10)
    final = remote_tree(s3, bucket, "ckpt/")["ckpt/model.bin"]
    assert final == rest_states[-1]
    assert seen <= set(rest_states), "an upload sent a state the file never had at rest"
