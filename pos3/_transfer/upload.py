"""Uploads: one PUT or a multipart upload per file, the journal of open uploads, stale aborts.

Open multipart uploads pos3 started are journaled (one small JSON file each, under
``<cache_root>/.pos3/multipart/``) until completed or aborted. A process killed mid-upload
leaves its entry behind; the next upload of that prefix aborts it, so no hidden parts stay billed.
Every PUT carries the body's MD5, and the returned ETag is checked (`_send` sends again, bounded).
Connection failures and throttling are retried until the outage budget is spent (`retrying`).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

from .. import _local, _policy
from .._errors import Failure, IntegrityError, S3Error, TransferError, translate
from .._hashing import Hasher, file_digests
from .._plan import Copy, LocalFile, Plan, Record, is_racy
from .._s3 import META_XXH3
from .context import Resources, Sources, Target, retrying, run_all

__all__ = ["Unsettled", "abort_stale_multipart", "run_upload", "upload_file"]

log = logging.getLogger("pos3")


class Unsettled(Exception):
    """A file changed while it was read for upload: skipped now, sent by a later sync."""


def _read_for_upload(path: Path, settled: LocalFile | None = None) -> tuple[bytes, LocalFile, str, str]:
    """The whole file, its state before reading, its xxh3 and its MD5 (for the returned ETag).

    With ``settled`` (the state a settle check let through), a file written since is `Unsettled`.
    """
    before = _local.stat_file(path)
    if not _policy.still_settled(settled, before):
        raise Unsettled(str(path))
    with open(path, "rb") as fh:
        data = fh.read()
    if not _policy.same_state(before, _local.stat_file(path)) or len(data) != before.size:
        raise Unsettled(str(path))
    h = Hasher(md5=True)
    h.update(data)
    return data, before, h.xxh3, h.md5 or ""


def _digests_by_part(path: Path, part: int) -> tuple[str, list[str]]:
    """The file's xxh3 and the MD5 of each ``part``-byte part, in one read."""
    h = Hasher()
    md5s: list[str] = []
    with open(path, "rb") as fh:
        while data := fh.read(part):
            h.update(data)
            md5s.append(hashlib.md5(data, usedforsecurity=False).hexdigest())
    return h.xxh3, md5s


def _pread(path: Path, offset: int, size: int) -> tuple[bytes, str]:
    """``size`` bytes at ``offset``, and their MD5."""
    with open(path, "rb") as fh:
        data = os.pread(fh.fileno(), size, offset)
    return data, hashlib.md5(data, usedforsecurity=False).hexdigest()


async def _send(res: Resources, url: str, send: Callable[[], Awaitable[str]]) -> str:
    """Send a body through outages and throttling (`retrying`); send it again, up to
    ``RetrySettings.repairs`` times, when the server stored other bytes than were sent."""
    repairs = 0
    while True:
        try:
            return await retrying(res, url, send)
        except IntegrityError as exc:
            if not _policy.may_repair(repairs, res.options.retry):
                raise
            repairs += 1
            log.warning("%s; sending it again (%d of %d)", exc, repairs, res.options.retry.repairs)


# ---------------------------------------------------------------------------- journal of open uploads


def _journal_add(folder: Path, bucket: str, key: str, upload_id: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha256(f"{bucket}\0{key}\0{upload_id}".encode()).hexdigest()[:32]
    path = folder / f"{name}.json"
    tmp = folder / f"{name}.tmp"
    tmp.write_text(json.dumps({"bucket": bucket, "key": key, "upload_id": upload_id, "pid": os.getpid()}))
    os.replace(tmp, path)
    return path


def _journal_remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


# Multipart uploads this process is sending right now; any other journal entry of this process
# is stale (its abort failed earlier) and is aborted by the next sync, like a dead process's.
_IN_FLIGHT: set[str] = set()


def _journal_stale(folder: Path, bucket: str, prefix: str) -> list[tuple[Path, str, str]]:
    """Entries of dead processes, or of this one but no longer in flight, for keys below ``prefix``."""
    out: list[tuple[Path, str, str]] = []
    try:
        entries = sorted(folder.glob("*.json"))
    except OSError:
        return out
    for entry in entries:
        try:
            data = json.loads(entry.read_text())
            found = (str(data["bucket"]), str(data["key"]), str(data["upload_id"]), int(data["pid"]))
        except (OSError, ValueError, KeyError, TypeError):
            _journal_remove(entry)  # half-written by a killed process: nothing to go on
            continue
        b, key, upload_id, pid = found
        abandoned = not _pid_alive(pid) or (pid == os.getpid() and upload_id not in _IN_FLIGHT)
        if b == bucket and key.startswith(prefix) and abandoned:
            out.append((entry, key, upload_id))
    return out


async def abort_stale_multipart(res: Resources, target: Target) -> None:
    """Abort multipart uploads below the target that a killed pos3 process left open."""
    folder = res.private / "multipart"
    stale = await anyio.to_thread.run_sync(_journal_stale, folder, target.url.bucket, target.url.stem)
    if not stale:
        return
    s3 = await res.pool.get(target.profile)
    for entry, key, upload_id in stale:
        if await s3.abort_multipart(target.url.bucket, key, upload_id, strict=True):
            log.info("aborted a multipart upload of s3://%s/%s left open by a killed run", target.url.bucket, key)
            await anyio.to_thread.run_sync(_journal_remove, entry)


# ---------------------------------------------------------------------------- one batch


async def run_upload(res: Resources, target: Target, src: Sources, plan: Plan, digests: dict[str, str], *,
                     counts: tuple[int, int] = (0, 0), settled: bool = False) -> None:
    """Carry out an upload plan; failed objects are collected into one `TransferError`.

    ``counts`` are the files found unchanged and those skipped, for the summary line. When
    ``settled``, the copies passed a settle check on the scan's stats: a file written since the
    scan is left for a later sync (`Unsettled`), never sent in a state nobody saw at rest.
    """
    s3 = await res.pool.get(target.profile)
    store = await res.store()
    root = target.local
    bucket = target.url.bucket
    failures: list[Failure] = []
    pending: list[tuple[str, Record]] = []

    def local_path(rel: str) -> Path:
        return root / rel if rel else root

    for rel in plan.adopt:
        obj, lf = src.remote.files[rel], src.local.files[rel]
        xxh = digests.get(rel)
        if xxh is None:
            xxh = (await anyio.to_thread.run_sync(file_digests, local_path(rel), False)).xxh3
        pending.append((rel, Record.of(obj.key, obj.etag, obj.size, lf, xxh, src.scanned_ns, obj.last_modified)))
    for rel in plan.refresh:
        rec, lf = src.records[rel], src.local.files[rel]
        pending.append((rel, Record.of(rec.key, rec.etag, rec.size, lf, digests.get(rel, rec.xxh3), src.scanned_ns,
                                       rec.last_modified, rec.checksum)))

    total = sum(c.size for c in plan.copies)
    files = sum(1 for c in plan.copies if not c.is_dir)
    with res.progress.bar(f"upload {target.url}", total, files=files, unchanged=counts[0], skipped=counts[1]
                          ) as bar:

        async def one(c: Copy) -> None:
            url = target.url.child(c.key)
            try:
                if c.is_dir:
                    await retrying(res, str(url), lambda: s3.put(bucket, c.key, b"", {}))
                    return
                rec = await upload_file(res, s3, bucket, c, local_path(c.rel), bar.update,
                                        settled=src.local.files[c.rel] if settled else None)
                if rec is not None:
                    pending.append((c.rel, rec))
                bar.file_done()
            except Unsettled:
                log.info("%s is still being written; it will be uploaded by a later sync", local_path(c.rel))
            except Exception as exc:
                failures.append(Failure(url, translate(exc, url)))

        await res.run_each(one, plan.copies,
                           lambda c: not _policy.is_multipart(c.size, res.options.multipart_threshold))

    gone = [d.rel for d in plan.deletes]
    if plan.deletes:
        if failures:
            log.warning("%s: not deleting %d remote objects because uploads failed", target.url, len(gone))
            gone = []
        else:
            keys = [d.key for d in plan.deletes]
            for i in range(0, len(keys), 1000):
                async with res.limiter:
                    for key, err in await s3.delete_many(bucket, keys[i : i + 1000]):
                        failures.append(Failure(target.url.child(key), err))
    await anyio.to_thread.run_sync(store.write, root, pending, gone)
    if failures:
        raise TransferError.of("upload", failures)


# ---------------------------------------------------------------------------- one file


async def upload_file(
    res: Resources, s3: Any, bucket: str, c: Copy, path: Path, progress: Callable[[int], object], *,
    settled: LocalFile | None = None,
) -> Record | None:
    """Upload one file; ``None`` when it changed while being read (next sync sends it again).

    ``settled``: the state a settle check let through; when the file is no longer in it, nothing
    is sent (`Unsettled`).
    """
    url = f"s3://{bucket}/{c.key}"
    taken = time.time_ns()  # before the first stat: the record is taken no earlier than this
    if not _policy.is_multipart(c.size, res.options.multipart_threshold):
        in_memory = _policy.body_in_memory(c.size)
        async with contextlib.nullcontext() if in_memory else res.body_slots:
            data, before, xxh, md5 = await res.in_thread(_read_for_upload, path, settled)
            if res.rate:
                await res.rate.acquire(len(data))
            etag = await _send(res, url, lambda: s3.put(bucket, c.key, data, {META_XXH3: xxh}, md5=md5))
            progress(len(data))
            size = len(data)
            del data
        # The bytes sent are those read between two equal stats (`_read_for_upload`): the record
        # of ``before`` is true of them. A later change shows as another stat at the next sync (or,
        # racy, is hashed then: `Record.racy`), so no stat after the PUT (a thread hop per file).
        return Record.of(c.key, etag, size, before, xxh, taken)
    before = await anyio.to_thread.run_sync(_local.stat_file, path)
    if not _policy.still_settled(settled, before):
        raise Unsettled(str(path))
    async with res.hash_limiter:
        xxh = (await anyio.to_thread.run_sync(file_digests, path, False)).xxh3
    size = before.size
    etag = await _multipart(res, s3, bucket, c, path, before, xxh, progress, is_racy(before.mtime_ns, taken))
    # Parts are read one by one while the upload runs: a change between them shows here.
    after = await anyio.to_thread.run_sync(_local.stat_file, path)
    if not _policy.upload_kept_still(before, after, size):
        log.warning("%s changed while it was uploaded to %s; it will be sent again next sync", path, url)
        return None
    # A racy file (mtime too close to `taken`) may have been rewritten unseen: its record does
    # not prove it, and the next sync hashes it (see Record.racy).
    return Record.of(c.key, etag, size, before, xxh, taken)


async def _multipart(
    res: Resources, s3: Any, bucket: str, c: Copy, path: Path, before: LocalFile, xxh: str,
    progress: Callable[[int], object], racy: bool = False,
) -> str:
    """Send a large file as a multipart upload, journaled while open; the ETag of the object.

    When ``racy`` (the file's mtime is too recent to show a rewrite), the file is read once more
    before completing: its xxh3 must be ``xxh`` and each part's MD5 the one sent, or the upload
    is aborted (`Unsettled`); the object never gets bytes its fingerprint does not describe.
    """
    part = _policy.upload_part_size(before.size, res.options.part_size)
    count = max(1, _policy.part_count(before.size, part))
    url = f"s3://{bucket}/{c.key}"
    # CreateMultipartUpload requests sent, counted before each is sent: any beyond the one whose
    # answer arrived (a failed call, or botocore's own retries) may have left an upload open.
    creates = [0]

    async def create() -> str:
        creates[0] += 1
        upload_id, attempts = await s3.open_multipart(bucket, c.key, {META_XXH3: xxh})
        creates[0] += attempts - 1
        return str(upload_id)

    # Shielded: a cancellation that arrived while the server was creating the upload would lose
    # its id, and with it the abort below; it is delivered at the next checkpoint, which must be
    # inside the try (the journal write's), never between the two.
    try:
        with anyio.CancelScope(shield=True):
            upload_id: str = await retrying(res, url, create)
    except BaseException:
        if creates[0]:
            await _abort_orphans(s3, bucket, c.key, "")
        raise
    _IN_FLIGHT.add(upload_id)
    journal: Path | None = None
    etags: list[str] = [""] * count
    sent: list[str] = [""] * count
    try:
        journal = await anyio.to_thread.run_sync(_journal_add, res.private / "multipart", bucket, c.key, upload_id)

        async def send(index: int) -> None:
            async with res.limiter, res.body_slots:
                data, md5 = await anyio.to_thread.run_sync(_pread, path, index * part, part)
                sent[index] = md5
                if res.rate:
                    await res.rate.acquire(len(data))
                etags[index] = await _send(
                    res, url, lambda: s3.upload_part(bucket, c.key, upload_id, index + 1, data, md5=md5))
                progress(len(data))

        await run_all(*(functools.partial(send, i) for i in range(count)))
        # Never complete an object from bytes of a file that changed meanwhile.
        now = await anyio.to_thread.run_sync(_local.stat_file, path)
        if not _policy.same_state(before, now):
            raise Unsettled(str(path))
        if racy:
            async with res.hash_limiter:
                again = await anyio.to_thread.run_sync(_digests_by_part, path, part)
            if again != (xxh, sent):
                raise Unsettled(str(path))
        etag = await _complete(res, s3, bucket, c.key, upload_id, etags, xxh, before.size)
    except BaseException:
        if await s3.abort_multipart(bucket, c.key, upload_id, strict=True) and journal is not None:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(_journal_remove, journal)
        raise
    finally:
        _IN_FLIGHT.discard(upload_id)
        if creates[0] > 1:
            await _abort_orphans(s3, bucket, c.key, upload_id)
    await anyio.to_thread.run_sync(_journal_remove, journal)
    return etag


async def _complete(res: Resources, s3: Any, bucket: str, key: str, upload_id: str, etags: list[str], xxh: str,
                    size: int) -> str:
    """CompleteMultipartUpload through outages; a Complete sent again after its answer was lost
    finds NoSuchUpload, and then the object in place is taken when it is the one sent
    (`_policy.completed_before`), else the error stands."""
    url = f"s3://{bucket}/{key}"
    try:
        return str(await retrying(res, url, lambda: s3.complete_multipart(bucket, key, upload_id, etags)))
    except S3Error as exc:
        head = await s3.head(bucket, key) if exc.code in ("NoSuchUpload", "404") else None
        found = (head or {}).get("Metadata", {}).get(META_XXH3)
        length = (head or {}).get("ContentLength")
        if head is None or not _policy.completed_before(exc.code, found, length, xxh3=xxh, size=size):
            raise
        log.info("%s: the multipart upload had completed before its answer was lost", url)
        return str(head.get("ETag", "")).strip('"')


async def _abort_orphans(s3: Any, bucket: str, key: str, ours: str) -> None:
    """Abort the other open multipart uploads of ``key``, after a CreateMultipartUpload was sent
    more than once: an answer lost on the way leaves an upload open that no journal knows.
    (Another writer uploading the same key at that moment would see its upload fail loudly:
    two writers of one key are a conflict either way.)"""
    with anyio.CancelScope(shield=True), anyio.move_on_after(30):
        try:
            found = await s3.list_multipart(bucket, key)
        except Exception as exc:
            log.warning("s3://%s/%s: could not list open multipart uploads (%s)", bucket, key, exc)
            return
        for k, upload_id, _ in found:
            if k == key and upload_id != ours:
                log.info("s3://%s/%s: aborting a multipart upload left open by a lost answer", bucket, key)
                await s3.abort_multipart(bucket, k, upload_id)
