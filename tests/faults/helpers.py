"""Invariant checks shared by the fault tests."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pos3
from tests.conftest import local_tree, remote_tree


def failed_keys(err: pos3.TransferError) -> set[str]:
    """The keys (``s3://`` URLs reduced to keys) a `TransferError` names."""
    out: set[str] = set()
    for target, _ in err.failures:
        assert target.startswith("s3://"), target
        out.add(target.split("/", 3)[3])
    return out


def assert_download_invariant(s3: Any, bucket: str, prefix: str, root: Path, error: BaseException | None) -> None:
    """Every local file is byte-identical to S3; anything missing is named by the error."""
    remote = {k[len(prefix):]: v for k, v in remote_tree(s3, bucket, prefix).items()}
    local = local_tree(root) if root.exists() else {}
    for rel, data in local.items():
        assert rel in remote, f"{rel}: a local file that is not in S3"
        assert data == remote[rel], f"{rel}: local bytes differ from S3"
    missing = {prefix + rel for rel in remote if rel not in local}
    if error is None:
        assert not missing, f"no error, yet missing: {sorted(missing)}"
        return
    if isinstance(error, pos3.TransferError):
        assert missing <= failed_keys(error), f"missing {sorted(missing)} but the error names {error}"
        assert str(error)


def assert_upload_invariant(s3: Any, bucket: str, prefix: str, files: dict[str, bytes],
                            error: BaseException | None) -> None:
    """Every object equals its local file; a missing or stale one is named by the error."""
    remote = {k[len(prefix):]: v for k, v in remote_tree(s3, bucket, prefix).items()}
    wrong = {prefix + rel for rel, data in files.items() if remote.get(rel) != data}
    if error is None:
        assert not wrong, f"no error, yet these objects differ: {sorted(wrong)}"
        assert set(remote) == set(files)
        return
    for rel, data in remote.items():
        assert data == files.get(rel), f"{prefix}{rel}: an object that differs from its local file"
    if isinstance(error, pos3.TransferError):
        named = failed_keys(error)
        if prefix.rstrip("/") not in named:  # a failure of the whole prefix (its listing) covers every key
            assert wrong <= named, f"wrong {sorted(wrong)} but the error names {error}"


def record_timing(name: str, kind: str, healthy: float, faulty: float) -> None:
    """Keep a scenario's measured times (``POS3_FAULT_TIMINGS=file`` collects them for the issue note)."""
    out = os.environ.get("POS3_FAULT_TIMINGS")
    if out:
        with open(out, "a") as fh:
            fh.write(json.dumps({"scenario": name, "facade": kind, "healthy_s": round(healthy, 2),
                                 "faulty_s": round(faulty, 2)}) + "\n")
