"""The benchmark suite, run end to end on tiny datasets so that it never rots.

No timing is asserted: only that every scenario ran, pos3's results were byte-correct, the
server saw the requests we expect, and peers that are not installed are reported as such.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks.report import BEGIN, END, write_page
from benchmarks.server import classify

REPO = Path(__file__).resolve().parent.parent


def test_smoke_run(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--preset", "smoke", "--no-install", "--no-profile", "--no-docs",
         "--work-dir", str(tmp_path / "work"), "--results", str(results)],
        cwd=REPO, capture_output=True, text=True, timeout=110, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads(results.read_text())
    keys = [s["key"] for s in data["scenarios"]]
    assert {"dl_small", "dl_large", "resync_noop", "resync_changed", "ul_small", "ul_noop"} <= set(keys)

    mine = {s["scenario"]: s for s in data["summaries"] if s["client"] == "pos3"}
    assert set(mine) == set(keys)
    assert all(s["status"] == "ok" for s in mine.values()), mine
    assert mine["resync_noop"]["requests"] == {"LIST": 1}  # 60 objects: one page, nothing else
    assert mine["ul_noop"]["requests"] == {"LIST": 1}
    assert mine["dl_small"]["requests"]["GET"] == 20
    assert mine["resync_changed"]["requests"]["GET"] == 3  # 5 % of 60, rewritten with the same size

    peers = [s for s in data["summaries"] if s["client"] != "pos3"]
    assert peers and all(s["status"] == "not installed" for s in peers)
    assert "### Targets" in proc.stdout and "not installed" in proc.stdout
    assert any("xxh3-128" in k and v.endswith("GB/s") for k, v in data["extras"].items())


def test_page_section_is_replaced_between_markers(tmp_path: Path) -> None:
    page = tmp_path / "performance.md"
    page.write_text(f"# Performance\n\nintro\n\n{BEGIN}\nold\n{END}\n\noutro\n")
    write_page(page, "new table\n")
    text = page.read_text()
    assert "old" not in text and "new table" in text
    assert text.startswith("# Performance\n\nintro") and text.endswith("outro\n")


def test_requests_are_classified() -> None:
    host = "127.0.0.1:5000"
    assert classify("GET", host, "/bucket", "list-type=2&prefix=a%2F") == "LIST"
    assert classify("GET", host, "/bucket/a/b.bin", "") == "GET"
    assert classify("PUT", host, "/bucket/a/b.bin", "") == "PUT"
    assert classify("PUT", host, "/bucket/a/b.bin", "partNumber=1&uploadId=x") == "PUT_PART"
    assert classify("POST", host, "/bucket/a/b.bin", "uploads") == "MPU"
    assert classify("POST", host, "/bucket", "delete") == "DELETE"
    assert classify("HEAD", host, "/bucket/a", "") == "HEAD"
    assert classify("GET", "bucket.s3.example:5000", "/a/b.bin", "") == "GET"
