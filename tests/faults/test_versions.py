"""A download is tied to the version it listed, and foreign ETags still catch damage (issue 12, items 1, 2)."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.conftest import CountingMotoServer, local_tree, require, wait_for
from tests.faults.conftest import fault_mirror
from tests.faults.proxy import FaultProxy, make_rule

pytestmark = pytest.mark.anyio


def _set_etag(bucket: str, key: str) -> None:
    from moto.s3.models import s3_backends

    backend = next(iter(s3_backends.values()))["global"]
    backend.buckets[bucket].keys.get(key)._etag = hashlib.md5(key.encode(), usedforsecurity=False).hexdigest()


@pytest.mark.parametrize("size", [300_000, 900_000], ids=["streamed", "ranged"])
async def test_a_flipped_byte_is_repaired_even_when_the_etag_is_not_an_md5(
    size: int, proxy: FaultProxy, server: CountingMotoServer, s3: Any, bucket: str, cache_root: Path, tmp_path: Path
) -> None:
    require(server, "store_in_process")
    body = os.urandom(size)
    s3.put_object(Bucket=bucket, Key="data/x.bin", Body=body)
    _set_etag(bucket, "data/x.bin")  # a server whose ETags are not MD5s, and no SSE header to say so
    flip = proxy.scenario.add(make_rule("flip", method="GET", path="/data/x.bin", times=1))
    threshold = {"ranged_threshold": 512 << 10}
    async with fault_mirror(cache_root, part_size=300_000) as m:
        m._options = dataclasses.replace(m._options, **threshold)
        root = await m.download(f"s3://{bucket}/data", tmp_path / "dst")
    assert sum(flip.fired.values()) == 1
    assert local_tree(root) == {"x.bin": body}


@pytest.mark.parametrize("ignores_if_match", [False, True], ids=["if-match", "content-range-total"])
async def test_a_large_object_replaced_between_list_and_get_is_fetched_whole_in_its_new_version(
    ignores_if_match: bool, proxy: FaultProxy, server: CountingMotoServer, s3: Any, bucket: str,
    cache_root: Path, tmp_path: Path,
) -> None:
    if ignores_if_match:
        require(server, "unchecked_signatures")  # If-Match is signed: a real server refuses the stripped request
    v1, v2 = os.urandom(1_000_000), os.urandom(1_300_000)
    s3.put_object(Bucket=bucket, Key="ckpt/model.bin", Body=v1)
    # The first ranged GET waits before it reaches the server; meanwhile another tool replaces the object.
    hold = "hold_strip" if ignores_if_match else "hold_request"
    proxy.scenario.add(make_rule(hold, method="GET", path="/ckpt/model.bin", ranged=True, times=1))
    if ignores_if_match:  # a server that ignores If-Match: only Content-Range's total size tells
        proxy.scenario.add(make_rule("strip_if_match", method="GET", path="/ckpt/model.bin"))

    async def replace() -> None:
        await wait_for(lambda: proxy.count(hold) >= 1)
        await anyio.to_thread.run_sync(lambda: s3.put_object(Bucket=bucket, Key="ckpt/model.bin", Body=v2))
        proxy.gate.set()

    async with fault_mirror(cache_root, part_size=256 << 10) as m, anyio.create_task_group() as tg:
        tg.start_soon(replace)
        root = await m.download(f"s3://{bucket}/ckpt", tmp_path / "dst")
    assert local_tree(root) == {"model.bin": v2}  # whole, new version; never the head of v2 or a v1/v2 splice
    before = len(proxy.log)
    async with fault_mirror(cache_root, part_size=256 << 10) as m:
        await m.download(f"s3://{bucket}/ckpt", tmp_path / "dst")
    assert [e for e in proxy.log[before:] if e.method == "GET" and not e.query] == []  # recorded as v2
