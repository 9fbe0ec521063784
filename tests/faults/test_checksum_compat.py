"""A server that refuses the newer checksum headers and aws-chunked bodies, as some S3-compatible ones do.

The fault proxy answers every request that carries them (``x-amz-checksum-*``,
``x-amz-sdk-checksum-algorithm``, ``x-amz-trailer``, ``Content-Encoding: aws-chunked``) the way
such servers do, and passes the others to the real server: the error must name the setting
that helps, and that setting must make the same transfer work through the same proxy.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

import pos3
from tests.conftest import remote_tree
from tests.faults.conftest import fault_mirror
from tests.faults.proxy import FaultProxy, make_rule

pytestmark = pytest.mark.anyio

NEWER = r"^(x-amz-checksum-|x-amz-sdk-checksum-algorithm|x-amz-trailer|content-encoding: .*aws-chunked)"


@pytest.mark.parametrize(("status", "code"), [(400, "InvalidArgument"), (501, "NotImplemented")])
async def test_refused_checksums_point_to_when_required(
    status: int, code: str, proxy: FaultProxy, server: Any, s3: Any, bucket: str, cache_root: Path, tmp_path: Path
) -> None:
    proxy.scenario.add(make_rule("status", status=status, code=code, header=NEWER))
    src = tmp_path / "src"
    src.mkdir()
    data = os.urandom(3000)
    (src / "a.bin").write_bytes(data)

    with pytest.raises(pos3.TransferError) as info:
        async with fault_mirror(cache_root) as m:  # the default chain, through the proxy
            await m.upload(f"s3://{bucket}/out", src, interval=None)
    message = str(info.value)
    assert f"s3://{bucket}/out/a.bin" in message and code in message
    assert 'request_checksum="when_required"' in message and "AWS_REQUEST_CHECKSUM_CALCULATION" in message
    assert proxy.count(kind="status") == 1  # refused at once: a setting to change, not a fault to retry
    assert remote_tree(s3, bucket, "out/") == {}

    old = pos3.Profile("old", proxy.url, region=server.region, request_checksum="when_required",
                       access_key=server.environ["AWS_ACCESS_KEY_ID"],
                       secret_key=server.environ["AWS_SECRET_ACCESS_KEY"])
    async with fault_mirror(cache_root) as m:
        await m.upload(f"s3://{bucket}/out", src, interval=None, profile=old)
    async with fault_mirror(cache_root) as m:
        got = await m.download(f"s3://{bucket}/out/a.bin", local=tmp_path / "back.bin", profile=old)
    assert remote_tree(s3, bucket, "out/") == {"out/a.bin": data}
    assert Path(got).read_bytes() == data
    assert proxy.count(kind="status") == 1  # nothing else was refused


async def test_other_bad_requests_get_no_checksum_hint(proxy: FaultProxy, bucket: str, cache_root: Path) -> None:
    proxy.scenario.add(make_rule("status", status=400, code="InvalidBucketState", method="GET"))
    with pytest.raises(pos3.S3Error) as info:
        async with fault_mirror(cache_root) as m:
            await m.download(f"s3://{bucket}/d")
    assert "InvalidBucketState" in str(info.value) and "when_required" not in str(info.value)
