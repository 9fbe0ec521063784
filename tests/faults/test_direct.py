"""Direct GETs and PUTs (`pos3._direct`), seen at the proxy: who sent each request, and what landed.

After botocore's first request to a bucket, pos3 signs GETs and PUTs of single objects itself
and sends them over its own HTTP client. These tests tell the two paths apart by their User-Agent at the
proxy, and check that the bytes, the keys (odd characters included) and the metadata are exactly
what the botocore path gives.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from tests.conftest import local_tree, put
from tests.faults.proxy import FaultProxy, make_rule

pytestmark = pytest.mark.anyio

# Keys whose quoting differs between naive and botocore-exact URL building.
ODD = ["plain.bin", "a b.bin", "plus+sign.bin", "tilde~x.bin", "pct%20.bin", "ünïcödé.bin", "semi;colon=eq&amp.bin",
       "deep/er/x.bin", "paren (1).bin", "star*.bin"]


def _files() -> dict[str, bytes]:
    return {name: f"{name}:{i}".encode() * (50 + 37 * i) for i, name in enumerate(ODD)}


def _gets(proxy: FaultProxy, prefix: str, start: int = 0) -> list[Any]:
    return [e for e in proxy.log[start:]
            if e.method == "GET" and f"/{prefix}/" in e.path and "list-type" not in e.query]


def _direct(entries: list[Any]) -> int:
    return sum(1 for e in entries if e.agent.startswith("pos3/"))


async def test_objects_after_the_first_go_direct_and_land_exact(
    proxy: FaultProxy, s3: Any, bucket: str, open_mirror: Callable[..., Any], tmp_path: Path
) -> None:
    files = _files()
    put(s3, bucket, {f"data/{k}": v for k, v in files.items()})
    async with open_mirror(max_workers=2) as m:
        root = await m.download(f"s3://{bucket}/data", tmp_path / "down")
        gets = _gets(proxy, "data")
        assert len(gets) == len(files)  # one GET per object: nothing sent twice
        assert _direct(gets) >= len(files) - 2  # only the first requests, before the route is known, via botocore
        # Once the route is known, listings go direct too, and read back every odd key exactly.
        before = len(proxy.log)
        listed = await m.ls(f"s3://{bucket}/data", recursive=True)
        assert {f"s3://{bucket}/data/{k}" for k in files} <= set(listed)
        lists = [e for e in proxy.log[before:] if e.method == "GET" and "list-type=2" in e.query]
        assert lists and _direct(lists) == len(lists)
    assert local_tree(root) == files

    src = tmp_path / "src"
    for name, data in files.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(data)
    async with open_mirror(max_workers=2) as m:
        await m.upload(f"s3://{bucket}/up", src, interval=None)
    puts = [e for e in proxy.log if e.method == "PUT" and f"/{bucket}/up/" in e.path]
    assert len(puts) == len(files)
    assert _direct(puts) >= len(files) - 2
    for name, data in files.items():
        obj = s3.get_object(Bucket=bucket, Key=f"up/{name}")
        assert obj["Body"].read() == data
        assert obj["Metadata"].get("pos3-xxh3")  # the fingerprint travels with direct PUTs too
        assert obj.get("ContentType", "binary/octet-stream") == "binary/octet-stream"


async def test_pos3_direct_0_sends_everything_through_botocore(
    proxy: FaultProxy, s3: Any, bucket: str, open_mirror: Callable[..., Any], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POS3_DIRECT", "0")
    files = _files()
    put(s3, bucket, {f"data/{k}": v for k, v in files.items()})
    async with open_mirror() as m:
        root = await m.download(f"s3://{bucket}/data", tmp_path / "down")
    assert local_tree(root) == files
    gets = _gets(proxy, "data")
    assert len(gets) == len(files) and _direct(gets) == 0


async def test_a_redirect_of_a_direct_get_is_sent_again_through_botocore(
    proxy: FaultProxy, s3: Any, bucket: str, open_mirror: Callable[..., Any], tmp_path: Path
) -> None:
    # The route learned from botocore no longer fits (the bucket moved): botocore's redirect
    # handling takes that request, and the route is learned again.
    files = {f"k{i:02d}.bin": bytes([i]) * (100 + i) for i in range(12)}
    put(s3, bucket, {f"data/{k}": v for k, v in files.items()})
    proxy.scenario.add(make_rule("status", status=301, code="PermanentRedirect", method="GET", path="/data/k05",
                                 header=r"^user-agent: pos3/", times=1))
    async with open_mirror(max_workers=1) as m:
        root = await m.download(f"s3://{bucket}/data", tmp_path / "down")
    assert local_tree(root) == files
    gets = _gets(proxy, "data")
    k05 = [i for i, e in enumerate(gets) if e.path.endswith("/k05.bin")]
    assert [gets[i].kind for i in k05] == ["status", "pass"]  # direct, redirected; then botocore's, served
    assert gets[k05[0]].agent.startswith("pos3/") and not gets[k05[1]].agent.startswith("pos3/")
    later = gets[k05[1] + 1:]
    assert len(gets) == len(files) + 1
    assert _direct(later) == len(later)  # the route was learned again


async def test_a_body_the_server_refuses_as_damaged_is_sent_again(
    proxy: FaultProxy, s3: Any, bucket: str, open_mirror: Callable[..., Any], tmp_path: Path
) -> None:
    # BadDigest: the server computed another checksum than the PUT carried (bytes damaged on the
    # way). The file is sent again, and the object is exact.
    src = tmp_path / "src"
    src.mkdir()
    files = {f"f{i}.bin": bytes([65 + i]) * (300 + i) for i in range(6)}
    for name, data in files.items():
        (src / name).write_bytes(data)
    proxy.scenario.add(make_rule("status", status=400, code="BadDigest", method="PUT", path="/up/f4.bin", times=1))
    async with open_mirror(max_workers=1) as m:
        await m.upload(f"s3://{bucket}/up", src, interval=None)
    for name, data in files.items():
        assert s3.get_object(Bucket=bucket, Key=f"up/{name}")["Body"].read() == data
    assert sum(1 for e in proxy.log if e.method == "PUT" and e.path.endswith("/up/f4.bin")) == 2


def _lists(proxy: FaultProxy, start: int = 0) -> list[Any]:
    return [e for e in proxy.log[start:] if e.method == "GET" and "list-type=2" in e.query]


async def test_a_second_mirror_on_the_same_cache_sends_everything_direct_from_its_first_request(
    proxy: FaultProxy, s3: Any, bucket: str, open_mirror: Callable[..., Any], tmp_path: Path, cache_root: Path
) -> None:
    # The route, settings and credentials the first mirror learned from botocore are remembered
    # in the cache root: the next one lists and fetches direct from the start.
    files = _files()
    put(s3, bucket, {f"data/{k}": v for k, v in files.items()})
    async with open_mirror() as m:
        await m.download(f"s3://{bucket}/data", tmp_path / "down")
    changed = {"plain.bin": b"new bytes", "deep/er/x.bin": b"other new bytes"}
    put(s3, bucket, {f"data/{k}": v for k, v in changed.items()})
    start = len(proxy.log)
    async with open_mirror() as m:
        root = await m.download(f"s3://{bucket}/data", tmp_path / "down")
    assert local_tree(root) == {**files, **changed}
    lists, gets = _lists(proxy, start), _gets(proxy, "data", start)
    assert lists and len(gets) == len(changed)
    assert _direct(lists) == len(lists) and _direct(gets) == len(gets)
    memo = (cache_root / ".pos3" / "routes.json").read_text()
    assert bucket in memo and os.environ["AWS_SECRET_ACCESS_KEY"] not in memo  # no secret in the cache


async def test_a_remembered_route_the_server_refuses_is_learned_again_through_botocore(
    proxy: FaultProxy, s3: Any, bucket: str, open_mirror: Callable[..., Any], tmp_path: Path
) -> None:
    files = {f"k{i:02d}.bin": bytes([i]) * (100 + i) for i in range(8)}
    put(s3, bucket, {f"data/{k}": v for k, v in files.items()})
    async with open_mirror() as m:
        await m.download(f"s3://{bucket}/data", tmp_path / "down")
    files["k03.bin"] = b"changed"
    put(s3, bucket, {"data/k03.bin": files["k03.bin"]})
    start = len(proxy.log)
    # The bucket moved since the route was remembered: its first direct listing is redirected.
    proxy.scenario.add(make_rule("status", status=301, code="PermanentRedirect", method="GET", query="list-type",
                                 header=r"^user-agent: pos3/", times=1))
    async with open_mirror() as m:
        root = await m.download(f"s3://{bucket}/data", tmp_path / "down")
    assert local_tree(root) == files
    lists = _lists(proxy, start)
    refused = [e for e in lists if e.kind == "status"]
    assert len(refused) == 1 and refused[0].agent.startswith("pos3/")
    # The same listing, sent again by botocore (which follows redirects itself), and served.
    again = [e for e in lists if not e.agent.startswith("pos3/") and parse_qs(e.query) == parse_qs(refused[0].query)]
    assert [e.kind for e in again] == ["pass"]
    gets = _gets(proxy, "data", start)
    assert len(gets) == 1 and _direct(gets) == 1  # the route was learned again
