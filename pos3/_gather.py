"""Find out what is there before planning: list, scan, load records, and answer content checks.

`gather` lists the remote side, scans the local side and loads the records concurrently and
returns them as `Sources`; `evidence` answers the content checks a plan asks for (hashes,
MD5 ETags, pos3 fingerprints). `ls_entries` and `ls_local` are the listings behind ``ls``.
"""

from __future__ import annotations

import datetime
import logging
import os
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from . import _local
from ._errors import UnsafeKeyError
from ._hashing import file_digests, is_md5_etag
from ._keys import find_collisions, key_paths, relative_path
from ._plan import Check, CheckKind, LocalTree, Plan, RemoteFile, RemoteTree, TransferPlan
from ._profiles import Profile
from ._s3 import META_XXH3
from ._transfer.context import Resources, Sources, Target, run_all
from ._urls import S3URL

__all__ = ["ListEntry", "describe", "evidence", "gather", "ls_entries", "ls_local", "ls_local_entries"]

log = logging.getLogger("pos3")


@dataclass(frozen=True)
class ListEntry:
    """One line of a detailed listing (``pos3 ls --long``).

    Attributes:
        name: The full ``s3://`` URL, or the local path.
        is_dir: A folder (a common prefix, a directory marker or a local directory).
        size: Bytes of a file; ``None`` for a folder.
        last_modified: ISO 8601 time of a file; ``""`` for a folder or when unknown.
    """

    name: str
    is_dir: bool
    size: int | None = None
    last_modified: str = ""


def head_file(key: str, head: Mapping[str, Any]) -> RemoteFile:
    """The listing entry of one object from its HEAD answer."""
    stamp = head.get("LastModified")
    iso = getattr(stamp, "isoformat", None)
    return RemoteFile(key, int(head["ContentLength"]), str(head.get("ETag", "")).strip('"'),
                      str(iso()) if callable(iso) else "")


async def gather(res: Resources, target: Target, *, direction: str) -> Sources:
    """List the remote side, scan the local side and load records, concurrently."""
    s3 = await res.pool.get(target.profile)
    url = target.url
    # No store yet means no records: planning alone (a dry run) never creates one.
    store = await res.store() if res.has_store() else None
    result: dict[str, Any] = {}

    async def do_list() -> None:
        if url.stem and not url.trailing_slash:
            if direction == "upload":
                is_file = await anyio.to_thread.run_sync(target.local.is_file)
                if is_file:
                    obj = await s3.head(url.bucket, url.stem)
                    files = (head_file(url.stem, obj),) if obj else ()
                    result["listing"] = (url.stem, True, files, ())
                    return
            if direction == "download":
                # Without a trailing slash an object named exactly like the URL wins over the
                # objects below it (as in pos3 0.4.0): both questions are asked at once.
                found: dict[str, Any] = {}

                async def exact() -> None:
                    found["exact"] = await s3.first(url.bucket, url.stem)

                async def below() -> None:
                    found["below"] = await s3.list_all(url.bucket, url.dir_prefix)

                await run_all(exact, below)
                first: RemoteFile | None = found["exact"]
                if first is not None and first.key == url.stem:
                    result["listing"] = (url.stem, True, (first,), ())
                    return
                listing = found["below"]
            else:
                listing = await s3.list_all(url.bucket, url.dir_prefix)
            result["listing"] = (url.dir_prefix, False, listing.files, listing.markers)
        else:
            listing = await s3.list_all(url.bucket, url.dir_prefix)
            result["listing"] = (url.dir_prefix, False, listing.files, listing.markers)

    async def do_scan() -> None:
        result["scanned_ns"] = time.time_ns()
        result["local"] = await anyio.to_thread.run_sync(_local.scan, target.local)

    async def do_records() -> None:
        result["records"] = await anyio.to_thread.run_sync(store.load, target.local) if store else {}

    await run_all(do_list, do_scan, do_records)

    prefix, single, files, markers = result["listing"]
    remote_files: dict[str, RemoteFile] = {}
    marker_rels: set[str] = set()
    unsafe: list[str] = []
    if single:
        for f in files:
            remote_files[""] = f
    else:
        refused: set[str] = set()
        for f in files:
            try:
                rel = relative_path(f.key, prefix)
            except UnsafeKeyError as exc:
                unsafe.append(str(exc))
                refused.add(f.key)
                continue
            remote_files[rel] = f
        for m in markers:
            try:
                rel = relative_path(m, prefix)
            except UnsafeKeyError as exc:
                unsafe.append(str(exc))
                continue
            if rel:
                marker_rels.add(rel)
        if direction == "download":
            unsafe += find_collisions(key_paths(files, remote_files, refused, prefix))
    if unsafe and direction == "download":
        shown = "; ".join(unsafe[:5]) + (f"; and {len(unsafe) - 5} more" if len(unsafe) > 5 else "")
        raise UnsafeKeyError(f"{url}: refusing to download unsafe keys: {shown}")
    local: LocalTree = result["local"]
    empty = not files and not markers
    if single and direction == "download" and target.local.is_dir():
        if target.explicit_local:
            raise IsADirectoryError(f"{target.local}: is a folder, but {url} is a single object")
        local = LocalTree(dirs=frozenset({""}))
    elif not single and "" in local.files:
        if target.explicit_local or direction == "upload":
            if direction == "download":
                raise NotADirectoryError(f"{target.local}: is a file, but {url} is a folder")
        else:
            local = LocalTree(dirs=frozenset())
            result["root_is_file"] = True
    records = result["records"]
    if single:
        records = {"": records[""]} if "" in records else {}
    src = Sources(prefix, single, RemoteTree(remote_files, frozenset(marker_rels)), local, records, empty)
    src.root_is_file = result.get("root_is_file", False)
    src.scanned_ns = result["scanned_ns"]
    return src


async def evidence(
    res: Resources, target: Target, src: Sources, checks: tuple[Check, ...]
) -> tuple[dict[str, bool], dict[str, str]]:
    """Answer content checks: rel -> same, and rel -> local xxh3 for what was hashed."""
    same: dict[str, bool] = {}
    digests: dict[str, str] = {}
    s3 = await res.pool.get(target.profile)
    root = target.local

    async def one(check: Check) -> None:
        rel = check.rel
        path = root / rel if rel else root
        if check.kind is CheckKind.LOCAL_VS_RECORD:
            async with res.hash_limiter:
                h = await anyio.to_thread.run_sync(file_digests, path, False)
            digests[rel] = h.xxh3
            same[rel] = h.xxh3 == src.records[rel].xxh3
            return
        obj = src.remote.files[rel]
        if is_md5_etag(obj.etag):
            async with res.hash_limiter:
                h = await anyio.to_thread.run_sync(file_digests, path, True)
            digests[rel] = h.xxh3
            same[rel] = h.md5 == obj.etag
            return
        async with res.limiter:
            head = await s3.head(target.url.bucket, obj.key)
        expected = (head or {}).get("Metadata", {}).get(META_XXH3)
        if not expected:
            same[rel] = False
            return
        async with res.hash_limiter:
            h = await anyio.to_thread.run_sync(file_digests, path, False)
        digests[rel] = h.xxh3
        same[rel] = h.xxh3 == expected

    async def guarded(check: Check) -> None:
        try:
            await one(check)
        except Exception as exc:
            # Could not compare: transfer it (the safe answer), and say why in the log.
            log.debug("content check of %s failed: %s", check.rel, exc)
            same[check.rel] = False

    async with anyio.create_task_group() as tg:
        for check in checks:
            tg.start_soon(guarded, check)
    return same, digests


def describe(target: Target, src: Sources, plan: Plan, direction: str) -> TransferPlan:
    """The public `TransferPlan` of a plan: full URLs and local paths, with reasons."""
    url = target.url

    def remote_name(rel: str) -> str:
        return url.child(src.prefix + rel)

    def local_name(rel: str) -> str:
        return str(target.local / rel) if rel else str(target.local)

    if direction == "download":
        return TransferPlan.from_plans([(plan, remote_name, local_name)])
    return TransferPlan.from_plans([(plan, local_name, remote_name)])


async def ls_entries(res: Resources, url: S3URL, profile: Profile | None, recursive: bool) -> list[ListEntry]:
    """The names `ls` returns, in the same order, with each object's size and last-modified time."""
    s3 = await res.pool.get(profile)
    prefix = url.dir_prefix
    if not recursive:
        files, dirs = await s3.list_level(url.bucket, prefix)
        out = [ListEntry(url.child(f.key), False, f.size, f.last_modified) for f in files if f.key != prefix]
        out += [ListEntry(url.child(d.rstrip("/")), True) for d in dirs]
        if not out and url.stem and not url.trailing_slash:
            # Not a folder: perhaps the URL names one object, as `aws s3 ls` would show it.
            head = await s3.head(url.bucket, url.stem)
            if head is not None:
                obj = head_file(url.stem, head)
                out = [ListEntry(url.child(obj.key), False, obj.size, obj.last_modified)]
        return sorted(out, key=lambda e: e.name)
    listing = await s3.list_all(url.bucket, prefix)
    by_rel = {f.key[len(prefix) :].strip("/"): f for f in listing.files}
    names: set[str] = set()
    for key in [f.key for f in listing.files] + list(listing.markers):
        rel = key[len(prefix) :].strip("/")
        if not rel:
            continue
        parts = rel.split("/")
        for i in range(1, len(parts) + 1):
            names.add("/".join(parts[:i]))
    entries: list[ListEntry] = []
    for n in sorted(names, key=lambda n: url.child(prefix + n)):
        f = by_rel.get(n)
        if f is None:
            entries.append(ListEntry(url.child(prefix + n), True))
        else:
            entries.append(ListEntry(url.child(prefix + n), False, f.size, f.last_modified))
    return entries


def ls_local(path: Path, recursive: bool) -> list[str]:
    """The paths `ls` lists for a local folder (blocking; run it in a worker thread)."""
    if not path.exists():
        return []  # as pos3 0.4.0: nothing there, nothing listed
    if path.is_file():
        return [str(path)]
    out: list[str] = []
    if recursive:
        for dirpath, dirnames, filenames in os.walk(path):
            base = Path(dirpath)
            out += [str(base / d) for d in dirnames]
            out += [str(base / f) for f in filenames]
    else:
        out = [str(path / name) for name in os.listdir(path)]
    return sorted(out)


def ls_local_entries(path: Path, recursive: bool) -> list[ListEntry]:
    """`ls_local` with each file's size and modification time."""
    out: list[ListEntry] = []
    for name in ls_local(path, recursive):
        try:
            st = os.stat(name)
        except OSError:  # a dangling symlink: describe the link itself
            st = os.lstat(name)
        if stat.S_ISDIR(st.st_mode):
            out.append(ListEntry(name, True))
        else:
            stamp = datetime.datetime.fromtimestamp(st.st_mtime, datetime.UTC).isoformat()
            out.append(ListEntry(name, False, st.st_size, stamp))
    return out
