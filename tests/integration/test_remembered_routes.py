"""A run that can send every request direct makes no botocore client (`pos3._routes`).

Each run is its own interpreter, through either facade; it prints which botocore modules it
loaded. The first run learns the route through botocore; the next one, on the same cache root,
fetches and uploads what changed without importing botocore at all.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import local_tree, put, remote_tree

RUN = """
import json, sys, anyio, pos3
kind, op, url, local, cache = sys.argv[1:]
if kind == "mirror":
    with pos3.mirror(cache_root=cache, show_progress=False):
        pos3.download(url, local) if op == "download" else pos3.upload(url, local, interval=None)
else:
    async def main():
        async with pos3.amirror(cache_root=cache, show_progress=False) as m:
            await (m.download(url, local) if op == "download" else m.upload(url, local, interval=None))
    anyio.run(main)
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("botocore", "aiobotocore"))))
"""


def _run(kind: str, op: str, url: str, local: Path, cache: Path) -> list[str]:
    res = subprocess.run([sys.executable, "-c", RUN, kind, op, url, str(local), str(cache)],
                         capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    return list(json.loads(res.stdout.splitlines()[-1]))


@pytest.mark.parametrize("kind", ["mirror", "amirror"])
def test_a_run_with_a_remembered_route_imports_no_botocore(
    kind: str, s3: Any, bucket: str, tmp_path: Path
) -> None:
    files = {f"d/f{i}.txt": f"v1 {i}".encode() * 40 for i in range(6)}
    put(s3, bucket, {f"data/{k}": v for k, v in files.items()})
    cache, down = tmp_path / "cache", tmp_path / "down"
    assert _run(kind, "download", f"s3://{bucket}/data", down, cache)  # the first run learns through botocore
    files["d/f2.txt"] = b"v2, changed remotely"
    put(s3, bucket, {"data/d/f2.txt": files["d/f2.txt"]})
    assert _run(kind, "download", f"s3://{bucket}/data", down, cache) == []
    assert local_tree(down) == files

    (down / "d" / "f4.txt").write_bytes(b"v3, changed locally")
    (down / "new.txt").write_bytes(b"a new file")
    assert _run(kind, "upload", f"s3://{bucket}/data", down, cache) == []
    assert remote_tree(s3, bucket, "data/") == {f"data/{k}": v for k, v in local_tree(down).items()}
