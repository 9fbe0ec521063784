"""The benchmark suite, run end to end on tiny datasets so that it never rots.

No timing is asserted: only that every scenario ran, pos3's results were byte-correct, the
server saw the requests we expect, and peers that are not installed are reported as such.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from benchmarks.report import BEGIN, END, markers, write_page
from benchmarks.server import MotoProcess, classify

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow(3)  # the longest test of the suite: started first
@pytest.mark.timeout(330)
def test_smoke_run(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--preset", "smoke", "--no-install", "--no-profile", "--no-docs",
         "--clients", "pos3,pos3_cli,s5cmd", "--work-dir", str(tmp_path / "work"), "--results", str(results)],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads(results.read_text())
    keys = [s["key"] for s in data["scenarios"]]
    assert {"dl_small", "resync_small_noop", "dl_large", "resync_noop", "resync_changed", "ul_small", "ul_noop",
            "dl_small_20ms", "ul_small_20ms", "scale_dl", "scale_noop"} <= set(keys)

    for client in ("pos3", "pos3_cli"):
        mine = {s["scenario"]: s for s in data["summaries"] if s["client"] == client}
        assert set(mine) == set(keys)
        assert all(s["status"] == "ok" for s in mine.values()), {k: (s["status"], s["detail"]) for k, s in mine.items()}
        assert mine["resync_noop"]["requests"] == {"LIST": 1}  # 60 objects: one page, nothing else
        assert mine["resync_small_noop"]["requests"] == {"LIST": 1}
        assert mine["scale_noop"]["requests"] == {"LIST": 1}
        # An upload registration checks its bucket once (HeadBucket, counted as OTHER): issue 15.
        assert mine["ul_noop"]["requests"] == {"LIST": 1, "OTHER": 1}
        assert mine["dl_small"]["requests"]["GET"] == 20
        assert mine["dl_small_20ms"]["requests"]["GET"] == 20
        assert mine["resync_changed"]["requests"]["GET"] == 3  # 5 % of 60, rewritten with the same size

    s5cmd = [s for s in data["summaries"] if s["client"] == "s5cmd"]
    assert s5cmd and all(s["status"] == "not installed" for s in s5cmd)  # --no-install: no peer venv
    assert [p["objects"] for p in data["planner"]] == [1000, 3000]
    assert all(not p.get("failed") and p["total"] > 0 for p in data["planner"])
    assert {"import pos3", "pos3 --help", "pos3 --version"} <= set(data["startup"])
    assert data["floor"]["get_ms"] > 0 and data["floor"]["put_ms"] > 0
    assert "### Targets (issue 16)" in proc.stdout and "not installed" in proc.stdout
    assert any("xxh3-128" in k and v.endswith("GB/s") for k, v in data["extras"].items())


def test_latency_can_be_set_and_cleared() -> None:
    """The latency middleware answers after the delay (slept in the request's thread), then turns off."""
    server = MotoProcess().start()
    try:
        url = server.endpoint + "/"
        server.set_latency(300)
        with urllib.request.urlopen(url, timeout=30) as resp:  # ListBuckets, after the delay
            assert resp.status == 200
        server.set_latency(0)
        assert sum(server.counts().values()) == 1
    finally:
        server.stop()


def test_page_section_is_replaced_between_markers(tmp_path: Path) -> None:
    page = tmp_path / "performance.md"
    page.write_text(f"# Performance\n\nintro\n\n{BEGIN}\nold\n{END}\n\noutro\n")
    write_page(page, "new table\n")
    text = page.read_text()
    assert "old" not in text and "new table" in text
    assert text.startswith("# Performance\n\nintro") and text.endswith("outro\n")

    write_page(page, "rgw table\n", "ceph-rgw", "Ceph RGW")  # another server: its own section, appended
    write_page(page, "rgw table 2\n", "ceph-rgw", "Ceph RGW")
    text = page.read_text()
    begin, end = markers("ceph-rgw")
    assert text.count(begin) == 1 and text.count(end) == 1 and "rgw table 2" in text and "rgw table\n" not in text
    assert "new table" in text and "## Results against Ceph RGW" in text


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
