"""Atomic snapshots: publish a folder (objects first, the commit last), read the newest back, GC.

Readers that download the prefix see the previous snapshot or the new one, never a mix. The
layout and the rules of which objects are garbage live in the pure `pos3._snapshot`.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio

from .. import _local, _policy
from .._errors import Failure, NotFoundError, TransferError, translate
from .._exclude import Excluder
from .._hashing import file_digests
from .._plan import Copy, LocalFile, LocalTree, Reason, Record, RemoteFile, RemoteTree, ancestors
from .._snapshot import Manifest, SnapshotLayout, garbage, newest_complete
from .._state import root_lock
from .._urls import S3URL
from .context import Resources, Sources, Target, retrying, run_all
from .upload import Unsettled, upload_file

__all__ = ["publish_folder", "use_snapshot"]

log = logging.getLogger("pos3")

# Commit numbers tried when other publishers of the same prefix take them first.
COMMIT_ATTEMPTS = 10


def _digest(path: Path, settled: LocalFile | None) -> str:
    """The file's xxh3; with ``settled``, of that state only (else `Unsettled`), so that a
    snapshot never names content written after the settle check."""
    before = _local.stat_file(path)
    if not _policy.still_settled(settled, before):
        raise Unsettled(str(path))
    xxh3 = file_digests(path, False).xxh3
    if settled is not None and not _policy.same_state(before, _local.stat_file(path)):
        raise Unsettled(str(path))
    return xxh3


async def _read_small(res: Resources, s3: Any, bucket: str, key: str) -> tuple[bytes, str]:
    """A small object (a commit) whole, and its server LastModified (ISO 8601), through outages."""

    async def send() -> tuple[bytes, str]:
        async with res.limiter, s3.get(bucket, key) as (body, resp):
            data: bytes = await body.read()
            stamp = getattr(resp.get("LastModified"), "isoformat", None)
            return data, str(stamp()) if callable(stamp) else ""

    return await retrying(res, f"s3://{bucket}/{key}", send)


async def _newest_snapshot(
    res: Resources, s3: Any, bucket: str, layout: SnapshotLayout, keys: Mapping[str, RemoteFile]
) -> Manifest | None:
    """The newest commit below ``layout`` whose objects all exist in ``keys`` (by key)."""
    seqs = sorted((seq, k) for k in keys if (seq := layout.commit_seq(k)) is not None)
    for _, key in reversed(seqs):
        manifest = Manifest.from_json((await _read_small(res, s3, bucket, key))[0], f"s3://{bucket}/{key}")
        found = newest_complete(layout, [manifest], keys)
        if found is not None:
            return found
    return None


async def _commit(res: Resources, s3: Any, bucket: str, key: str, body: bytes) -> str | None:
    """Write a commit unless one with its number exists; when this one is there now, its server
    time (ISO 8601, ``""`` if the server sent none), else ``None``.

    ``If-None-Match: *`` makes the write conditional. The commit is always read back: that
    catches a server that ignores the condition and let another publisher's commit replace this
    one, and it tells a write sent again after its answer was lost (412: the key exists, with
    exactly these bytes) from another publisher's commit (other bytes: the number was taken).
    """
    async with res.limiter:
        written = await s3.put_new(bucket, key, body)
    try:
        found, stamp = await _read_small(res, s3, bucket, key)
    except NotFoundError:
        if written:
            raise
        return None  # a concurrent conditional write (409) that has not landed: taken all the same
    return stamp if found == body else None


# Superseded commits read at most per publish to learn which objects were theirs (older ones'
# objects count as unreferenced, and wait out the grace period).
DROPPED_READ = 8


async def _collect_garbage(
    res: Resources, s3: Any, url: S3URL, layout: SnapshotLayout, keys: Mapping[str, RemoteFile],
    uploaded: Mapping[str, str], manifest: Manifest, previous: Manifest | None, now: str,
) -> None:
    """Remove commits older than the kept ones and objects no kept commit refers to (see
    `pos3._snapshot.garbage` for the grace rule that spares other publishers' uncommitted objects).

    When a commit newer than this one exists, another publisher committed since: collecting is
    left to it (its listing is newer), so that nothing its commit refers to is removed here.
    """
    commit_keys = [f.key for f in (await s3.list_all(url.bucket, layout.commits)).files
                   if layout.commit_seq(f.key) is not None]
    if any((layout.commit_seq(k) or 0) > manifest.seq for k in commit_keys):
        log.info("%s: a newer commit exists; leaving old snapshot data to its publisher", url)
        return
    kept = [manifest] + ([previous] if previous is not None else [])
    oldest = min(m.seq for m in kept)
    old = sorted((seq, k) for k in commit_keys if (seq := layout.commit_seq(k)) is not None and seq < oldest)
    dropped: list[Manifest] = []
    for _, key in old[-DROPPED_READ:]:
        try:
            dropped.append(Manifest.from_json((await _read_small(res, s3, url.bucket, key))[0], url.child(key)))
        except (NotFoundError, ValueError) as exc:  # gone meanwhile, or not a manifest: its objects wait
            log.debug("%s: %s", url.child(key), exc)
    objects = [k for k in [*keys, *uploaded] if k.startswith(layout.objects)]
    modified = {k: f.last_modified for k, f in keys.items()}
    junk = garbage(layout, commit_keys, kept, objects, dropped=dropped, modified=modified, now=now)
    for i in range(0, len(junk), 1000):
        async with res.limiter:
            for key, err in await s3.delete_many(url.bucket, junk[i : i + 1000]):
                log.warning("could not remove old snapshot data %s: %s", url.child(key), err)


async def use_snapshot(res: Resources, target: Target, src: Sources) -> None:
    """If the prefix was published atomically, mirror its newest complete commit only."""
    layout = SnapshotLayout(src.prefix)
    by_key = {f.key: f for f in src.remote.files.values()}
    if not any(layout.commit_seq(k) is not None for k in by_key):
        return
    s3 = await res.pool.get(target.profile)
    manifest = await _newest_snapshot(res, s3, target.url.bucket, layout, by_key)
    if manifest is None:
        raise NotFoundError(f"{target.url}: no complete snapshot (a publish is under way?)", url=str(target.url))
    files: dict[str, RemoteFile] = {}
    for rel, (xxh3, size) in manifest.files.items():
        obj = by_key[layout.object_key(xxh3)]
        files[rel] = RemoteFile(obj.key, size, obj.etag, obj.last_modified)
    src.remote = RemoteTree(files, frozenset(manifest.dirs))


async def publish_folder(
    res: Resources, target: Target, *, delete: bool, exclude: Excluder, settle: float | None = None
) -> None:
    """Upload a folder as one atomic snapshot: missing objects first, the commit last.

    With ``settle``, nothing is published while a file changed less than ``settle`` s ago.
    """
    root = target.local
    url, bucket = target.url, target.url.bucket
    layout = SnapshotLayout(url.dir_prefix)
    s3 = await res.pool.get(target.profile)
    store = await res.store()
    async with root_lock(res.private, root, res.options.lock_timeout):
        box: dict[str, Any] = {}

        async def do_list() -> None:
            box["listing"] = await s3.list_all(bucket, layout.root)

        async def do_scan() -> None:
            box["scanned_ns"] = time.time_ns()  # the records below pair this scan's stats with hashes
            box["local"] = await anyio.to_thread.run_sync(_local.scan, root)

        async def do_records() -> None:
            box["records"] = await anyio.to_thread.run_sync(store.load, root)

        await run_all(do_list, do_scan, do_records)
        local: LocalTree = box["local"]
        records: dict[str, Record] = box["records"]
        keys = {f.key: f for f in box["listing"].files}
        previous = await _newest_snapshot(res, s3, bucket, layout, keys)
        files = {r: f for r, f in local.files.items() if not exclude.excluded(r)}
        if settle:
            cutoff = _policy.settle_cutoff(box["scanned_ns"], settle)
            if _policy.unsettled(((r, f.mtime_ns) for r, f in files.items()), cutoff):
                log.debug("%s: files still changing; publish left for a later sync", root)
                return

        digests: dict[str, str] = {}

        async def fingerprint(rel: str, lf: LocalFile) -> None:
            rec = records.get(rel)
            if rec is not None and rec.proves(lf) and rec.key == layout.object_key(rec.xxh3):
                digests[rel] = rec.xxh3
                return
            async with res.hash_limiter:
                digests[rel] = await anyio.to_thread.run_sync(_digest, root / rel, lf if settle else None)

        try:
            await run_all(*(functools.partial(fingerprint, rel, lf) for rel, lf in files.items()))
        except Unsettled as exc:  # only with settle: a file written since the scan
            log.debug("%s changed since it was seen at rest; publish left for a later sync", exc)
            return

        failures: list[Failure] = []
        pending: list[tuple[str, Record]] = []
        uploaded: dict[str, str] = {}  # object key -> etag
        wanted: dict[str, tuple[str, int]] = {}
        for rel, lf in sorted(files.items()):
            key = layout.object_key(digests[rel])
            if key not in keys and key not in wanted:
                wanted[key] = (rel, lf.size)
        total = sum(size for _, size in wanted.values())
        with res.progress.bar(f"publish {url}", total, files=len(wanted), unchanged=len(files) - len(wanted)) as bar:

            async def send(c: Copy) -> None:
                blob = c.key
                try:
                    rec = await upload_file(res, s3, bucket, c, root / c.rel, bar.update,
                                            settled=files[c.rel] if settle else None)
                    if rec is None or layout.object_key(rec.xxh3) != blob:
                        # The file changed after it was fingerprinted: never keep a misnamed object.
                        await s3.delete_many(bucket, [blob])
                        raise Unsettled(str(root / c.rel))
                    uploaded[blob] = rec.etag
                    bar.file_done()
                except Unsettled as exc:
                    failures.append(Failure(str(root / c.rel), RuntimeError(f"{exc}: changed while publishing")))
                except Exception as exc:
                    failures.append(Failure(url.child(blob), translate(exc, url.child(blob))))

            copies = [Copy(rel, blob, size, Reason.NEW) for blob, (rel, size) in wanted.items()]
            await res.run_each(send, copies,
                               lambda c: not _policy.is_multipart(c.size, res.options.multipart_threshold))
        if failures:
            raise TransferError.of("upload", failures)

        entries = {rel: (digests[rel], lf.size) for rel, lf in files.items()}
        nonempty = {a for rel in [*files, *local.dirs] for a in ancestors(rel)}
        dirs = tuple(sorted(d for d in local.dirs - nonempty if not exclude.excluded(d)))
        for _ in range(COMMIT_ATTEMPTS):
            merged = dict(entries)
            if not delete and previous is not None:
                for rel, entry in previous.files.items():
                    merged.setdefault(rel, entry)
            top = max((seq for k in keys if (seq := layout.commit_seq(k)) is not None), default=0)
            manifest = Manifest(top + 1, merged, dirs)
            if manifest.same_content(previous):
                break
            stamp = await _commit(res, s3, bucket, layout.commit_key(manifest.seq), manifest.to_json())
            if stamp is not None:
                await _collect_garbage(res, s3, url, layout, keys, uploaded, manifest, previous, stamp)
                break
            # Another publisher took this number since the listing: build on its commit and
            # take the next number (with delete=False its files are kept, as for any newer commit).
            log.info("%s: commit %d was taken by another publisher; retrying with the next", url, manifest.seq)
            keys = {f.key: f for f in (await s3.list_all(bucket, layout.root)).files}
            previous = await _newest_snapshot(res, s3, bucket, layout, keys)
        else:
            raise TransferError.of("upload", [Failure(url.child(layout.commits), RuntimeError(
                f"other publishers took the next commit number {COMMIT_ATTEMPTS} times in a row; nothing was "
                "committed (the uploaded objects are kept for the next publish)"))])
        for rel, lf in files.items():
            blob = layout.object_key(digests[rel])
            etag = uploaded.get(blob) or (keys[blob].etag if blob in keys else "")
            pending.append((rel, Record.of(blob, etag, lf.size, lf, digests[rel], box["scanned_ns"])))
        await anyio.to_thread.run_sync(store.write, root, pending, ())
