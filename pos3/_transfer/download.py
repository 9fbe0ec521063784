"""One download batch: clear the way, adopt what is already there, fetch copies, delete, record.

Small and medium objects come with one streamed GET (resumed from the last good byte when the
body breaks); large ones go to `ranged`. Every file lands under a temporary name and is renamed
onto its final name only after its size and checksum were checked.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import anyio

from .. import _local, _policy
from .._errors import EndpointError, Failure, TransferError, translate
from .._hashing import CHUNK, Hasher, file_digests, is_md5_etag
from .._plan import Copy, LocalFile, Plan, Record
from .._s3 import META_XXH3
from .context import Resources, Sources, Target
from .place import DISK_ERRNOS, body_errors, check_write_and_place, hash_and_write, mkdir, place, raise_named
from .ranged import Resume, ranged_get, verify

__all__ = ["run_download"]

log = logging.getLogger("pos3")

RECORD_BATCH = 512  # records written to the state store at once


async def run_download(res: Resources, target: Target, src: Sources, plan: Plan, digests: dict[str, str]) -> None:
    """Carry out a download plan; failed objects are collected into one `TransferError`."""
    s3 = await res.pool.get(target.profile)
    root = target.local
    confine = root if not src.single else root.parent
    created = await anyio.to_thread.run_sync(_local.missing_top, root)  # folders this run makes
    staging = await anyio.to_thread.run_sync(_local.Staging.for_root, root, res.private)
    resumable = frozenset(staging.resume_path(c.key).name for c in plan.copies
                          if not c.is_dir and _policy.is_ranged(c.size, res.options.ranged_threshold))
    await anyio.to_thread.run_sync(staging.clean, resumable)
    store = await res.store()
    failures: list[Failure] = []
    pending: list[tuple[str, Record]] = []
    dropped: list[str] = []

    def local_path(rel: str) -> Path:
        return root / rel if rel else root

    async def flush() -> None:
        batch, gone = pending[:], dropped[:]
        pending.clear()
        dropped.clear()
        if batch or gone:
            await anyio.to_thread.run_sync(store.write, root, batch, gone)

    # 1. Clear the way: a file where a folder goes, or the reverse.
    if src.root_is_file:
        await anyio.to_thread.run_sync(os.unlink, root)
    for d in plan.clear:
        if d.rel == "" and src.single:
            await anyio.to_thread.run_sync(_local.delete_entry, root.parent, root.name, True, True)
        else:
            await anyio.to_thread.run_sync(_local.delete_entry, root, d.rel, d.is_dir, True)
        dropped.append(d.rel)
    if not src.single:
        await anyio.to_thread.run_sync(lambda: root.mkdir(parents=True, exist_ok=True))

    # 2. Records for files found identical, or merely touched.
    for rel in plan.adopt:
        obj = src.remote.files[rel]
        lf = src.local.files[rel]
        xxh = digests.get(rel)
        if xxh is None:
            h = await anyio.to_thread.run_sync(file_digests, local_path(rel), False)
            xxh = h.xxh3
        pending.append((rel, Record(obj.key, obj.etag, obj.size, lf.size, lf.mtime_ns, lf.inode, xxh,
                                    obj.last_modified)))
    for rel in plan.refresh:
        rec, lf = src.records[rel], src.local.files[rel]
        pending.append((rel, Record(rec.key, rec.etag, rec.size, lf.size, lf.mtime_ns, lf.inode, rec.xxh3,
                                    rec.last_modified, rec.checksum)))

    # 3. Copies.
    total = sum(c.size for c in plan.copies)
    with res.progress.bar(f"download {target.url}", total) as bar:

        async def one(c: Copy) -> None:
            try:
                if c.is_dir:
                    await anyio.to_thread.run_sync(mkdir, local_path(c.rel))
                    return
                listed = src.remote.files[c.rel].etag
                rec = await download_file(res, s3, target, c, local_path(c.rel), confine, staging, bar.update,
                                          listed)
                pending.append((c.rel, rec))
                if len(pending) >= RECORD_BATCH:
                    await flush()
            except Exception as exc:
                failures.append(Failure(target.url.child(c.key), translate(exc, target.url.child(c.key))))

        whole = [c for c in plan.copies if c.is_dir or not _policy.is_ranged(c.size, res.options.ranged_threshold)]
        limit = res.transfer_limit(whole)
        async with anyio.create_task_group() as tg:
            for c in plan.copies:
                if c.is_dir or not _policy.is_ranged(c.size, res.options.ranged_threshold):
                    await res.start_limited(tg, one, c, limit)
                else:
                    tg.start_soon(one, c)

    # 4. Deletes of what is gone remotely (deepest first, folders only when empty).
    for d in plan.deletes:
        try:
            await anyio.to_thread.run_sync(_local.delete_entry, root, d.rel, d.is_dir, False)
            dropped.append(d.rel)
        except Exception as exc:
            failures.append(Failure(str(local_path(d.rel)), exc))
    await flush()
    if failures:
        if created is not None:  # leave no empty folder behind when nothing could be placed
            await anyio.to_thread.run_sync(_local.prune_empty, confine, created)
        raise TransferError.of("download", failures)


async def download_file(
    res: Resources, s3: Any, target: Target, c: Copy, final: Path, confine: Path, staging: _local.Staging,
    progress: Callable[[int], object], listed_etag: str = "",
) -> Record:
    """Fetch one object to ``final`` (ranged and resumable when large); its new record."""
    bucket = target.url.bucket
    if _policy.is_ranged(c.size, res.options.ranged_threshold):
        tmp = await anyio.to_thread.run_sync(staging.resume_path, c.key)
        try:
            etag, meta, xxh = await ranged_get(res, s3, bucket, c, tmp, progress, listed_etag)
            lf = await anyio.to_thread.run_sync(place, tmp, final, confine)
        except OSError as exc:
            if exc.errno in DISK_ERRNOS:  # a full or read-only disk: give the space back
                await anyio.to_thread.run_sync(Resume.forget, tmp)
            raise
        except Exception:
            raise  # the partial file and its journal stay for the next run to resume
        except BaseException:
            Resume.forget(tmp)  # Ctrl-C: remove every temporary file
            raise
        await anyio.to_thread.run_sync(Resume.forget, tmp)
        return Record(c.key, etag, c.size, lf.size, lf.mtime_ns, lf.inode, xxh, meta.get("__last_modified", ""))
    # A fresh temporary name needs no I/O: the write makes the folder (in its worker thread), so a
    # small object costs one thread hop, not two.
    tmp = staging.folder / f"{uuid.uuid4().hex}.part"
    try:
        etag, meta, xxh, lf = await _streamed_get(res, s3, bucket, c, tmp, confine, final, progress)
    except BaseException:
        _local.Staging.discard(tmp)
        raise
    return Record(c.key, etag, c.size, lf.size, lf.mtime_ns, lf.inode, xxh, meta.get("__last_modified", ""))


def _open_new(tmp: Path) -> BinaryIO:
    tmp.parent.mkdir(parents=True, exist_ok=True)
    return open(tmp, "wb")  # closed by the caller, also on failure


async def _streamed_get(
    res: Resources, s3: Any, bucket: str, c: Copy, tmp: Path, confine: Path, final: Path,
    progress: Callable[[int], object],
) -> tuple[str, dict[str, str], str, LocalFile]:
    """One GET; resumes from the last good byte after a broken body."""
    url = f"s3://{bucket}/{c.key}"
    h: Hasher | None = None
    etag = ""
    meta: dict[str, str] = {}
    got = 0
    chunks: list[bytes] = []
    fh = None
    attempts = 0
    try:
        while True:
            try:
                async with s3.get(bucket, c.key, start=got, if_match=etag or None) as (body, resp):
                    if h is None:
                        etag = str(resp.get("ETag", "")).strip('"')
                        meta = dict(resp.get("Metadata") or {})
                        meta["__last_modified"] = str(getattr(resp.get("LastModified"), "isoformat", lambda: "")())
                        h = Hasher(md5=is_md5_etag(etag) and META_XXH3 not in meta)
                        size = int(resp.get("ContentLength", c.size))
                        if size != c.size:
                            c = Copy(c.rel, c.key, size, c.reason)
                    while True:
                        chunk = await body.read(CHUNK)
                        if not chunk:
                            break
                        got += len(chunk)
                        progress(len(chunk))
                        if _policy.body_in_memory(c.size):
                            chunks.append(chunk)  # hashed with the write, off the loop
                        else:
                            if fh is None:
                                fh = await anyio.to_thread.run_sync(_open_new, tmp)
                            await anyio.to_thread.run_sync(hash_and_write, h, fh, chunk)
                if got < c.size:
                    raise EndpointError(f"{url}: body ended after {got} of {c.size} bytes", url=url)
                break
            except body_errors() as exc:
                attempts += 1
                if not _policy.may_retry_body(attempts, res.options.body_retries, started=h is not None):
                    raise
                log.info("%s: body broke at byte %d (%s); resuming", url, got, exc)
                await anyio.sleep(_policy.retry_delay(attempts))
        assert h is not None
        hasher, size = h, c.size

        def check() -> None:
            verify(url, hasher, etag, meta, got, size)

        if fh is None:
            data = b"".join(chunks)
            lf = await anyio.to_thread.run_sync(check_write_and_place, h, data, check, tmp, final, confine)
        else:
            check()
            await anyio.to_thread.run_sync(fh.close)
            fh = None
            lf = await anyio.to_thread.run_sync(place, tmp, final, confine)
        return etag, meta, h.xxh3, lf
    except OSError as exc:
        raise_named(exc, final, url)
    finally:
        if fh is not None:
            with contextlib.suppress(OSError):
                fh.close()
