"""One download batch: clear the way, adopt what is already there, fetch copies, delete, record.

Small and medium objects come with one streamed GET (resumed from the last good byte when the
body breaks); large ones go to `ranged`. Every file lands under a temporary name and is renamed
onto its final name only after its size and checksum were checked.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from .. import _local, _policy
from .._errors import EndpointError, Failure, IntegrityError, TransferError, translate
from .._hashing import CHUNK, Hasher, file_digests
from .._plan import Copy, LocalFile, Plan, Record
from .._s3 import META_XXH3
from .context import Resources, Sources, Target
from .place import (
    DISK_ERRNOS,
    LAST_MODIFIED,
    check_write_and_place,
    hash_and_write,
    last_modified,
    mkdir,
    open_new,
    place,
    raise_named,
)
from .ranged import Resume, Stall, ranged_get, verify

__all__ = ["run_download"]

log = logging.getLogger("pos3")

RECORD_BATCH = 512  # records written to the state store at once


async def run_download(res: Resources, target: Target, src: Sources, plan: Plan, digests: dict[str, str], *,
                       counts: tuple[int, int] = (0, 0)) -> None:
    """Carry out a download plan; failed objects are collected into one `TransferError`.

    ``counts`` are the files found unchanged and those skipped, for the summary line.
    """
    s3 = await res.pool.get(target.profile)
    root = target.local
    confine = root if not src.single else root.parent
    if plan.copies or plan.clear or src.root_is_file:
        # A read-only target fails here, once, naming the folder: not once per file after every GET.
        await anyio.to_thread.run_sync(_local.check_writable, root)
    created = await anyio.to_thread.run_sync(_local.missing_top, root)  # folders this run makes
    staging = await anyio.to_thread.run_sync(_local.Staging.for_root, root, res.private)
    large = [c for c in plan.copies if not c.is_dir and _policy.is_ranged(c.size, res.options.ranged_threshold)]
    resumable = frozenset(staging.resume_path(c.key).name for c in large)
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
        pending.append((rel, Record.of(obj.key, obj.etag, obj.size, lf, xxh, src.scanned_ns, obj.last_modified)))
    for rel in plan.refresh:
        rec, lf = src.records[rel], src.local.files[rel]
        pending.append((rel, Record.of(rec.key, rec.etag, rec.size, lf, rec.xxh3, src.scanned_ns, rec.last_modified,
                                       rec.checksum)))

    # 3. Copies.
    total = sum(c.size for c in plan.copies)
    files = sum(1 for c in plan.copies if not c.is_dir)
    with res.progress.bar(f"download {target.url}", total, files=files, unchanged=counts[0], skipped=counts[1]
                          ) as bar:

        async def one(c: Copy) -> None:
            try:
                if c.is_dir:
                    await anyio.to_thread.run_sync(mkdir, local_path(c.rel))
                    return
                listed = src.remote.files[c.rel].etag
                rec = await download_file(res, s3, target, c, local_path(c.rel), confine, staging, bar.update,
                                          listed, len(large))
                pending.append((c.rel, rec))
                bar.file_done()
                if len(pending) >= RECORD_BATCH:
                    await flush()
            except Exception as exc:
                failures.append(Failure(target.url.child(c.key), translate(exc, target.url.child(c.key))))

        await res.run_each(one, plan.copies, lambda c: not _policy.is_ranged(c.size, res.options.ranged_threshold))

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
    progress: Callable[[int], object], listed_etag: str = "", together: int = 1,
) -> Record:
    """Fetch one object to ``final`` (ranged and resumable when large); its new record.

    ``together``: the large objects of the transfer, fetched side by side (their range size).

    A body that fails its check is fetched again, up to ``RetrySettings.repairs`` times.
    """
    bucket = target.url.bucket
    taken = time.time_ns()  # the record is taken no earlier: the file is written after this
    if _policy.is_ranged(c.size, res.options.ranged_threshold):
        tmp = await anyio.to_thread.run_sync(staging.resume_path, c.key)
        try:
            etag, meta, xxh, size = await ranged_get(res, s3, bucket, c, tmp, progress, listed_etag, together)
            lf = await anyio.to_thread.run_sync(place, tmp, final, confine, meta.get(LAST_MODIFIED, ""))
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
        return Record.of(c.key, etag, size, lf, xxh, taken, meta.get(LAST_MODIFIED, ""))
    url = f"s3://{bucket}/{c.key}"
    seen: set[str] = set()  # xxh3 of bodies whose MD5 was not their ETag
    repairs = 0
    while True:
        tmp = staging.new_path()  # a name only: the writer makes the folder (no thread hop per file)
        try:
            etag, meta, xxh, lf, size = await _streamed_get(res, s3, bucket, c, tmp, confine, final, progress,
                                                           frozenset(seen), _policy.repair_split(c.size, repairs))
        except Exception as exc:
            _local.Staging.discard(tmp)
            damaged = isinstance(translate(exc, url), IntegrityError)
            if not damaged or not _policy.may_repair(repairs, res.options.retry):
                raise
            if isinstance(exc, _policy.ETagMismatch):
                seen.add(exc.xxh3)
            repairs += 1
            log.warning("%s; fetching it again (%d of %d)", exc, repairs, res.options.retry.repairs)
            continue
        except BaseException:
            _local.Staging.discard(tmp)
            raise
        return Record.of(c.key, etag, size, lf, xxh, taken, meta.get(LAST_MODIFIED, ""))


async def _streamed_get(
    res: Resources, s3: Any, bucket: str, c: Copy, tmp: Path, confine: Path, final: Path,
    progress: Callable[[int], object], seen: frozenset[str], split: int | None = None,
) -> tuple[str, dict[str, str], str, LocalFile, int]:
    """One GET; resumes from the last good byte while attempts bring bytes (see `_policy.after_failure`).

    With ``split``, the body comes as two requests, the second from byte ``split`` on: a repair
    is shaped unlike the fetch it repairs (see `_policy.repair_split`).
    """
    url = f"s3://{bucket}/{c.key}"
    settings = res.options.retry
    h: Hasher | None = None
    etag = ""
    meta: dict[str, str] = {}
    got = 0
    chunks: list[bytes] = []
    fh = None
    state = _policy.Attempts()
    try:
        while True:
            answered = False
            before = got
            try:
                await res.throttle.wait()
                async with s3.get(bucket, c.key, start=got, if_match=etag or None, checked=True) as (body, resp):
                    answered = True
                    res.throttle.ok()
                    if h is None:
                        etag = str(resp.get("ETag", "")).strip('"')
                        meta = dict(resp.get("Metadata") or {})
                        meta[LAST_MODIFIED] = last_modified(resp)
                        md5 = _policy.etag_is_md5(etag, sse=str(resp.get("ServerSideEncryption") or ""),
                                                  sse_customer=str(resp.get("SSECustomerAlgorithm") or ""))
                        h = Hasher(md5=md5 and META_XXH3 not in meta)
                        size = int(resp.get("ContentLength", c.size))
                        if size != c.size:
                            c = Copy(c.rel, c.key, size, c.reason)
                    with Stall(settings.stall_timeout, url) as stall:
                        while True:
                            want = CHUNK if split is None else min(CHUNK, split - got)
                            if want <= 0:
                                break
                            chunk = await stall.read(body, want)
                            if not chunk:
                                break
                            got += len(chunk)
                            progress(len(chunk))
                            if _policy.body_in_memory(c.size):
                                chunks.append(chunk)  # hashed with the write, off the loop
                            else:
                                if fh is None:
                                    fh = await res.in_thread(open_new, tmp)
                                await res.in_thread(hash_and_write, h, fh, chunk)
                if split is not None and got >= split:
                    split = None  # the second request of a repair: from here to the end
                    continue
                if got < c.size:
                    raise EndpointError(f"{url}: body ended after {got} of {c.size} bytes", url=url)
                break
            except Exception as exc:
                found = await res.retrier.back_off(state, translate(exc, url), answered=answered,
                                                   progressed=got > before, what=f"{url} at byte {got}")
                if found is None:
                    raise
                state = found
        assert h is not None
        hasher, size = h, c.size

        def check() -> None:
            verify(url, hasher, etag, meta, got, size, seen)

        if fh is None:
            data = b"".join(chunks)
            lf = await res.in_thread(check_write_and_place, h, data, check, tmp, final, confine,
                                     meta[LAST_MODIFIED])
        else:
            check()
            await anyio.to_thread.run_sync(fh.close)
            fh = None
            lf = await anyio.to_thread.run_sync(place, tmp, final, confine, meta[LAST_MODIFIED])
        return etag, meta, h.xxh3, lf, size
    except OSError as exc:
        raise_named(exc, final, url)
    finally:
        if fh is not None:
            with contextlib.suppress(OSError):
                fh.close()
