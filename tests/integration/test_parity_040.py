"""Parity with pos3 0.4.0: an exact key wins over a folder; plans need an s3:// URL (issue 12)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import pos3
from tests.conftest import local_tree, put

pytestmark = pytest.mark.anyio


async def test_exact_key_wins_over_the_folder_of_the_same_name(
    open_mirror: Any, s3: Any, bucket: str, tmp_path: Path
) -> None:
    put(s3, bucket, {"data": b"the object", "data/a.txt": b"below", "data-2/b.txt": b"sibling"})
    async with open_mirror() as m:
        path = await m.download(f"s3://{bucket}/data")
        assert path.is_file() and path.read_bytes() == b"the object"
        plan = await m.plan_download(f"s3://{bucket}/data", local=tmp_path / "plan")
        assert plan.to_copy == [(f"s3://{bucket}/data", str(tmp_path / "plan"))]
    async with open_mirror() as m:  # with a trailing slash the URL names the folder
        folder = await m.download(f"s3://{bucket}/data/", local=tmp_path / "folder")
    assert local_tree(folder) == {"a.txt": b"below"}


@pytest.mark.parametrize("method", ["plan_download", "plan_upload"])
async def test_plans_refuse_a_local_path_by_name(open_mirror: Any, tmp_path: Path, method: str) -> None:
    local = tmp_path / "some" / "folder"
    async with open_mirror() as m:
        for given in (str(local), local):
            with pytest.raises(ValueError, match=str(local)) as info:
                await getattr(m, method)(given)
            assert isinstance(info.value, pos3.InvalidURLError)
            assert "s3://" in str(info.value)
