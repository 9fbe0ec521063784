"""Deterministic datasets: content generated from (name, key, version), written once to disk, seeded into moto.

Every byte is a pure function of the dataset's shape, so results are comparable between runs and
machines, and a client's result is verified against a manifest of xxh3-128 and MD5 digests.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import xxhash

CHUNK = 1 << 20
TIMES = "\u00d7"  # the multiplication sign


@dataclass(frozen=True)
class Dataset:
    """``count`` objects of ``size`` bytes under ``s3://<bucket>/<name>/``, spread over ``dirs`` folders."""

    name: str
    count: int
    size: int
    dirs: int = 1

    @property
    def prefix(self) -> str:
        return f"{self.name}/"

    @property
    def total_bytes(self) -> int:
        return self.count * self.size

    def rel_paths(self) -> list[str]:
        width = len(str(max(self.count - 1, 0)))
        out = []
        for i in range(self.count):
            leaf = f"f{i:0{width}d}.bin"
            out.append(f"d{i % self.dirs:03d}/{leaf}" if self.dirs > 1 else leaf)
        return sorted(out)

    def describe(self) -> str:
        return f"{self.count:,} {TIMES} {human_bytes(self.size)}"


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:g} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def chunks(ds: Dataset, rel: str, version: int = 0) -> Iterator[bytes]:
    """The content of one object, 1 MiB at a time."""
    left, j = ds.size, 0
    while left > 0:
        n = min(CHUNK, left)
        seed = xxhash.xxh64_intdigest(f"{ds.name}|{rel}|{version}|{j}".encode())
        yield random.Random(seed).randbytes(n)
        left -= n
        j += 1


@dataclass(frozen=True)
class Digest:
    size: int
    xxh3: str
    md5: str


Manifest = dict[str, Digest]


def digest_of(parts: Iterator[bytes]) -> Digest:
    x, m, size = xxhash.xxh3_128(), hashlib.md5(usedforsecurity=False), 0
    for part in parts:
        x.update(part)
        m.update(part)
        size += len(part)
    return Digest(size, x.hexdigest(), m.hexdigest())


def materialize(ds: Dataset, root: Path) -> Manifest:
    """Write the dataset under ``root/<name>`` (reused when already complete); return its manifest."""
    folder = root / ds.name
    stamp = root / f"{ds.name}.manifest.json"
    if stamp.exists() and folder.is_dir():
        saved = json.loads(stamp.read_text())
        if saved.get("shape") == asdict(ds):
            return {k: Digest(**v) for k, v in saved["files"].items()}
    shutil.rmtree(folder, ignore_errors=True)
    stamp.unlink(missing_ok=True)
    manifest: Manifest = {}

    def write(rel: str) -> tuple[str, Digest]:
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        x, m, size = xxhash.xxh3_128(), hashlib.md5(usedforsecurity=False), 0
        with open(path, "wb") as fh:
            for part in chunks(ds, rel):
                fh.write(part)
                x.update(part)
                m.update(part)
                size += len(part)
        return rel, Digest(size, x.hexdigest(), m.hexdigest())

    with ThreadPoolExecutor(4) as pool:
        manifest.update(pool.map(write, ds.rel_paths()))
    stamp.write_text(json.dumps({"shape": asdict(ds), "files": {k: asdict(v) for k, v in manifest.items()}}))
    return manifest


def s3_client(endpoint: str, access_key: str = "testing", secret_key: str = "testing",
              region: str = "us-east-1") -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=endpoint, region_name=region, aws_access_key_id=access_key,
                        aws_secret_access_key=secret_key, config=Config(max_pool_connections=32))


def seed(s3: Any, bucket: str, ds: Dataset, root: Path, prefix: str | None = None) -> None:
    """Upload the materialized dataset to ``s3://bucket/<prefix>`` (boto3 defaults: multipart above 8 MiB)."""
    from boto3.s3.transfer import TransferConfig

    base = ds.prefix if prefix is None else prefix
    folder = root / ds.name
    config = TransferConfig(max_concurrency=4)

    def put(rel: str) -> None:
        path = folder / rel
        if ds.size <= 8 * CHUNK:
            s3.put_object(Bucket=bucket, Key=base + rel, Body=path.read_bytes())
        else:
            s3.upload_file(str(path), bucket, base + rel, Config=config)

    workers = 24 if ds.size <= 8 * CHUNK else 2
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(put, ds.rel_paths()))


def delete_prefix(s3: Any, bucket: str, prefix: str) -> None:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", ())]
        if keys:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})


def _file_xxh3(path: Path) -> str:
    x = xxhash.xxh3_128()
    with open(path, "rb", buffering=0) as fh:
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        while n := fh.readinto(buf):
            x.update(view[:n])
    return x.hexdigest()


def _set_problem(what: str, missing: set[str], extra: set[str]) -> str:
    return f"{len(missing)} {what} missing (e.g. {sorted(missing)[:2]}), {len(extra)} extra (e.g. {sorted(extra)[:2]})"


def verify_local(folder: Path, manifest: Manifest) -> str | None:
    """None when ``folder`` holds exactly the manifest's files, byte for byte; else what is wrong."""
    if not folder.is_dir():
        return f"{folder} does not exist"
    found: set[str] = set()
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            found.add((Path(dirpath) / name).relative_to(folder).as_posix())
    missing, extra = set(manifest) - found, found - set(manifest)
    if missing or extra:
        return _set_problem("files", missing, extra)
    for rel in sorted(manifest):
        path = folder / rel
        want = manifest[rel]
        if path.stat().st_size != want.size:
            return f"{rel}: size {path.stat().st_size}, expected {want.size}"
        if _file_xxh3(path) != want.xxh3:
            return f"{rel}: content differs"
    return None


def verify_remote(s3: Any, bucket: str, prefix: str, manifest: Manifest, etag_only: bool = False) -> str | None:
    """None when ``s3://bucket/prefix`` holds exactly the manifest's objects, byte for byte; else what is wrong.

    With ``etag_only`` an object whose ETag is not the manifest's MD5 counts as wrong without a GET
    (a quick "is this dataset already seeded" check).
    """
    etags: dict[str, tuple[int, str]] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", ()):
            rel = obj["Key"][len(prefix):]
            if obj["Size"] == 0 and (rel == "" or rel.endswith("/")):
                continue  # a "folder" marker some clients create: no data, not counted as wrong
            etags[rel] = (obj["Size"], obj["ETag"].strip('"'))
    missing, extra = set(manifest) - set(etags), set(etags) - set(manifest)
    if missing or extra:
        return _set_problem("objects", missing, extra)
    for rel in sorted(manifest):
        size, etag = etags[rel]
        want = manifest[rel]
        if size != want.size:
            return f"{rel}: size {size}, expected {want.size}"
        if etag == want.md5:
            continue
        if etag_only:
            return f"{rel}: ETag {etag} is not the MD5 of the expected content"
        body = s3.get_object(Bucket=bucket, Key=prefix + rel)["Body"]
        x = xxhash.xxh3_128()
        while part := body.read(CHUNK):
            x.update(part)
        if x.hexdigest() != want.xxh3:
            return f"{rel}: content differs"
    return None


def mutate(s3: Any, bucket: str, ds: Dataset, manifest: Manifest, fraction: float, version: int) -> Manifest:
    """Rewrite ``fraction`` of the objects with new same-size content; return the new manifest."""
    rels = ds.rel_paths()
    stride = max(1, round(1 / fraction))
    chosen = [rel for i, rel in enumerate(rels) if (i + version) % stride == 0]
    out = dict(manifest)

    def put(rel: str) -> tuple[str, Digest]:
        body = b"".join(chunks(ds, rel, version))
        s3.put_object(Bucket=bucket, Key=ds.prefix + rel, Body=body)
        return rel, digest_of(iter([body]))

    with ThreadPoolExecutor(16) as pool:
        out.update(pool.map(put, chosen))
    return out


def restore(s3: Any, bucket: str, ds: Dataset, root: Path, manifest: Manifest, current: Manifest) -> None:
    """Put back the original content of every object whose content differs from ``manifest``."""
    changed = [rel for rel, d in current.items() if manifest[rel] != d]

    def put(rel: str) -> None:
        s3.put_object(Bucket=bucket, Key=ds.prefix + rel, Body=(root / ds.name / rel).read_bytes())

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, changed))
