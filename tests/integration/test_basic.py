from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import local_tree, put, remote_tree

pytestmark = pytest.mark.anyio


async def test_download_then_upload_roundtrip(open_mirror: Any, s3: Any, bucket: str, cache_root: Path) -> None:
    put(s3, bucket, {"data/a.txt": b"alpha", "data/sub/b.bin": b"\x00" * 3000, "data/empty": b""})
    async with open_mirror() as m:
        path = await m.download(f"s3://{bucket}/data")
        assert path == cache_root / "_" / bucket / "data"
        assert local_tree(path) == {"a.txt": b"alpha", "sub/b.bin": b"\x00" * 3000, "empty": b""}
        out = await m.upload(f"s3://{bucket}/results", interval=None)
        (out / "r.txt").write_text("result")
    assert remote_tree(s3, bucket, "results/") == {"results/r.txt": b"result"}
