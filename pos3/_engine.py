"""Carry out plans: list, scan, check, transfer and delete, under one concurrency limit.

`Engine` owns the clients, the state store and the limiter of one mirror. Every object of a
batch runs in a task of one task group; a failed object is collected, never stops the others,
and the batch ends with one `TransferError` naming all of them. Cancellation (Ctrl-C) removes
partial files and propagates.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, NoReturn

import anyio
from anyio.abc import TaskGroup

from . import _local
from ._errors import (
    EndpointError,
    Failure,
    IntegrityError,
    NotFoundError,
    S3Error,
    TransferError,
    UnsafeKeyError,
    translate,
)
from ._exclude import Excluder
from ._hashing import CHUNK, Hasher, file_digests, is_md5_etag
from ._keys import find_collisions, relative_path
from ._plan import (
    Check,
    CheckKind,
    Copy,
    LocalFile,
    LocalTree,
    Plan,
    Reason,
    Record,
    RemoteFile,
    RemoteTree,
    TransferPlan,
    ancestors,
    plan_download,
    plan_upload,
)
from ._profiles import Profile
from ._progress import Progress
from ._s3 import META_XXH3, ClientOptions, ClientPool
from ._shard import shard_members
from ._snapshot import Manifest, SnapshotLayout, garbage, newest_complete
from ._state import StateStore, root_lock
from ._urls import S3URL

__all__ = ["Engine", "EngineOptions", "ListEntry", "Target"]

log = logging.getLogger("pos3")

SMALL_OBJECT = 1 << 20  # read whole into memory up to this size
RECORD_BATCH = 512


@dataclass(frozen=True, kw_only=True)
class EngineOptions:
    """Tuning of one engine (set from `pos3.mirror` arguments; see its docstring)."""

    max_workers: int = 10
    max_upload_bytes_per_second: float | None = None
    part_size: int = 8 << 20
    download_part_size: int | None = None  # None: larger ranges for larger objects (see Engine)
    upload_buffer_bytes: int = 24 << 20  # upload bodies held in memory at once, across workers
    multipart_threshold: int = 8 << 20
    ranged_threshold: int = 32 << 20
    body_retries: int = 3
    lock_timeout: float = 600.0
    clients: ClientOptions = field(default_factory=ClientOptions)


@dataclass(frozen=True)
class Target:
    """One remote URL and the local path it mirrors to.

    Attributes:
        url: The parsed URL (profile selector already resolved into ``profile``).
        profile: The resolved profile, ``None`` for the default chain.
        local: Absolute local path.
        explicit_local: Whether the user chose ``local`` (else it is the cache path).
    """

    url: S3URL
    profile: Profile | None
    local: Path
    explicit_local: bool = False


async def run_all(*fns: Callable[[], Awaitable[None]]) -> None:
    """Run ``fns`` concurrently; when some fail, raise the first failure itself, not a group."""
    errors: list[Exception] = []

    async def guard(fn: Callable[[], Awaitable[None]]) -> None:
        try:
            await fn()
        except Exception as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        for fn in fns:
            tg.start_soon(guard, fn)
    if errors:
        raise errors[0]


class RateLimit:
    """A token bucket shared by every upload worker: one total rate in bytes per second."""

    def __init__(self, rate: float) -> None:
        self.rate = float(rate)
        self._available = self.rate
        self._stamp = time.monotonic()
        self._lock = anyio.Lock()

    async def acquire(self, amount: int) -> None:
        async with self._lock:
            now = time.monotonic()
            self._available = min(self.rate, self._available + (now - self._stamp) * self.rate)
            self._stamp = now
            self._available -= amount
            if self._available < 0:
                await anyio.sleep(-self._available / self.rate)


@dataclass
class _Sources:
    """What one operation found: the listing, the local tree and the records."""

    prefix: str
    single: bool
    remote: RemoteTree
    local: LocalTree
    records: dict[str, Record]
    empty: bool = False
    root_is_file: bool = False  # a file stands where the (cache) folder goes: replaced


_BODY_ERRORS: tuple[type[BaseException], ...]


def _body_errors() -> tuple[type[BaseException], ...]:
    import aiohttp
    from botocore.exceptions import IncompleteReadError, ReadTimeoutError, ResponseStreamingError

    return (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, IncompleteReadError,
            ResponseStreamingError, ReadTimeoutError, ConnectionError, EndpointError, TimeoutError)


_BODY_ERRORS = _body_errors()
_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO, errno.EACCES, errno.EPERM})


def _name_path(exc: OSError, path: Path, url: str) -> OSError:
    """A local disk error (full, read-only...) that names the file it was writing, else ``exc``."""
    if exc.filename is not None or exc.errno not in _DISK_ERRNOS:
        return exc
    return OSError(exc.errno, f"{exc.strerror} (downloading {url})", str(path))


def _raise_named(exc: OSError, path: Path, url: str) -> NoReturn:
    """Re-raise ``exc``, as an error naming ``path`` when it is a bare disk error."""
    named = _name_path(exc, path, url)
    if named is exc:
        raise exc
    raise named from exc


def _hash_range(fd: int, h: Hasher, start: int, end: int) -> None:
    """Feed bytes ``start..end`` of an open file to ``h`` (from the page cache: just written)."""
    pos = start
    while pos < end:
        data = os.pread(fd, min(CHUNK, end - pos), pos)
        if not data:
            raise OSError(f"file ended at byte {pos} of {end}")
        h.update(data)
        pos += len(data)


def _hash_and_write(h: Hasher, fh: BinaryIO, chunk: bytes) -> None:
    h.update(chunk)
    fh.write(chunk)


def _check_write_and_place(
    h: Hasher, data: bytes, verify: Callable[[], None], tmp: Path, final: Path, root: Path
) -> LocalFile:
    """Fingerprint a small body, check it, then place it: one worker-thread hop per file."""
    h.update(data)
    verify()
    return _write_and_place(tmp, final, root, data)


def _write_and_place(tmp: Path, final: Path, root: Path, data: bytes) -> LocalFile:
    with open(tmp, "wb") as fh:
        fh.write(data)
    return _place(tmp, final, root)


def _place(tmp: Path, final: Path, root: Path) -> LocalFile:
    _local.ensure_parent(root, final)
    if final.is_dir() and not final.is_symlink():
        raise IsADirectoryError(f"{final}: a folder stands where the file goes")
    os.replace(tmp, final)
    return _local.stat_file(final)


def _head_file(key: str, head: Mapping[str, Any]) -> RemoteFile:
    stamp = head.get("LastModified")
    iso = getattr(stamp, "isoformat", None)
    return RemoteFile(key, int(head["ContentLength"]), str(head.get("ETag", "")).strip('"'),
                      str(iso()) if callable(iso) else "")


def _mkdir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)


class _Unsettled(Exception):
    """A file changed while it was read for upload: skipped now, sent by a later sync."""


def _same_state(a: LocalFile, b: LocalFile) -> bool:
    return (a.size, a.mtime_ns, a.inode) == (b.size, b.mtime_ns, b.inode)


def _read_for_upload(path: Path) -> tuple[bytes, LocalFile, str, str]:
    """The whole file, its state before reading, its xxh3 and its MD5 (for the returned ETag)."""
    before = _local.stat_file(path)
    with open(path, "rb") as fh:
        data = fh.read()
    if not _same_state(before, _local.stat_file(path)) or len(data) != before.size:
        raise _Unsettled(str(path))
    h = Hasher(md5=True)
    h.update(data)
    return data, before, h.xxh3, h.md5 or ""


class _Resume:
    """The journal of a partial large download: which parts of which object version are on disk."""

    def __init__(self, data: Path, key: str, size: int, etag: str, part: int, meta: dict[str, str],
                 done: set[int]) -> None:
        self.data, self.key, self.size, self.etag, self.part = data, key, size, etag, part
        self.meta, self.done = meta, done

    @staticmethod
    def journal_path(data: Path) -> Path:
        return data.with_suffix(".json")

    @classmethod
    def load(cls, data: Path, key: str, size: int, etag: str, part: int) -> _Resume:
        """The journal of ``data`` if it matches this object version and part size, else a new one."""
        try:
            raw = json.loads(cls.journal_path(data).read_bytes())
            fits = (raw["key"], raw["size"], raw["etag"], raw["part"]) == (key, size, etag, part) and etag
            if fits and os.stat(data).st_size == size:
                return cls(data, key, size, etag, part, dict(raw["meta"]), {int(i) for i in raw["done"]})
        except (OSError, ValueError, KeyError, TypeError):
            pass
        cls.forget(data)
        return cls(data, key, size, "", part, {}, set())

    def open(self) -> int:
        """Open the partial file for writing and reading (created at full size when new)."""
        fd = os.open(self.data, os.O_RDWR | os.O_CREAT, 0o644)  # read back by the fingerprinting
        if not self.done:
            os.ftruncate(fd, 0)
            os.ftruncate(fd, self.size)
        return fd

    def mark_done(self, index: int, etag: str, meta: Mapping[str, str]) -> None:
        self.done.add(index)
        self.etag, self.meta = etag, dict(meta)
        body = {"key": self.key, "size": self.size, "etag": etag, "part": self.part, "meta": self.meta,
                "done": sorted(self.done)}
        path = self.journal_path(self.data)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(body))
        os.replace(tmp, path)

    @classmethod
    def forget(cls, data: Path) -> None:
        for path in (data, cls.journal_path(data)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def _pread(path: Path, offset: int, size: int) -> tuple[bytes, str]:
    """``size`` bytes at ``offset``, and their MD5."""
    with open(path, "rb") as fh:
        data = os.pread(fh.fileno(), size, offset)
    return data, hashlib.md5(data, usedforsecurity=False).hexdigest()


async def _twice(send: Callable[[], Awaitable[str]]) -> str:
    """Send once more when the server stored other bytes than were sent (a damaged request)."""
    try:
        return await send()
    except IntegrityError as exc:
        log.warning("%s; sending it again", exc)
        return await send()


# Open multipart uploads pos3 started are journaled (one small JSON file each, under
# <cache_root>/.pos3/multipart/) until completed or aborted. A process killed mid-upload leaves
# its entry behind; the next upload of that prefix aborts it, so no hidden parts stay billed.


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


class Engine:
    """Runs downloads, uploads and listings for one mirror, on the loop that created it."""

    def __init__(self, cache_root: Path, options: EngineOptions, progress: Progress) -> None:
        self.cache_root = cache_root
        self.private = cache_root / ".pos3"
        self.options = options
        self.progress = progress
        self.pool = ClientPool(options.clients)
        self.limiter = anyio.Semaphore(options.max_workers)
        self.hash_limiter = anyio.Semaphore(max(2, os.cpu_count() or 2))
        # Upload bodies are read whole into memory: this bounds how many are at once, so peak
        # memory stays near upload_buffer_bytes whatever max_workers and file sizes are.
        self.body_slots = anyio.Semaphore(max(1, options.upload_buffer_bytes // options.part_size))
        rate = options.max_upload_bytes_per_second
        self.rate = RateLimit(rate) if rate else None
        self._store: StateStore | None = None

    async def store(self) -> StateStore:
        if self._store is None:
            self._store = await anyio.to_thread.run_sync(StateStore, self.private / "state.db")
        return self._store

    async def aclose(self) -> None:
        await self.pool.aclose()
        if self._store is not None:
            self._store.close()

    # ------------------------------------------------------------------ gathering

    async def _gather(self, target: Target, *, direction: str) -> _Sources:
        """List the remote side, scan the local side and load records, concurrently."""
        s3 = await self.pool.get(target.profile)
        url = target.url
        # No store yet means no records: planning alone (a dry run) never creates one.
        store = await self.store() if self._store is not None or (self.private / "state.db").exists() else None
        result: dict[str, Any] = {}

        async def do_list() -> None:
            if url.stem and not url.trailing_slash:
                if direction == "upload":
                    is_file = await anyio.to_thread.run_sync(target.local.is_file)
                    if is_file:
                        obj = await s3.head(url.bucket, url.stem)
                        files = (_head_file(url.stem, obj),) if obj else ()
                        result["listing"] = (url.stem, True, files, ())
                        return
                listing = await s3.list_all(url.bucket, url.dir_prefix)
                if listing.empty and direction == "download":
                    obj = await s3.head(url.bucket, url.stem)
                    if obj is not None:
                        result["listing"] = (url.stem, True, (_head_file(url.stem, obj),), ())
                        return
                result["listing"] = (url.dir_prefix, False, listing.files, listing.markers)
            else:
                listing = await s3.list_all(url.bucket, url.dir_prefix)
                result["listing"] = (url.dir_prefix, False, listing.files, listing.markers)

        async def do_scan() -> None:
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
            for f in files:
                try:
                    remote_files[relative_path(f.key, prefix)] = f
                except UnsafeKeyError as exc:
                    unsafe.append(str(exc))
            for m in markers:
                try:
                    rel = relative_path(m, prefix)
                except UnsafeKeyError as exc:
                    unsafe.append(str(exc))
                    continue
                if rel:
                    marker_rels.add(rel)
            if direction == "download":
                unsafe += find_collisions((f.key, relative_path(f.key, prefix)) for f in files
                                          if not any(f.key in u for u in unsafe))
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
        src = _Sources(prefix, single, RemoteTree(remote_files, frozenset(marker_rels)), local, records, empty)
        src.root_is_file = result.get("root_is_file", False)
        return src

    # ------------------------------------------------------------------ evidence

    async def _evidence(
        self, target: Target, src: _Sources, checks: tuple[Check, ...], direction: str
    ) -> tuple[dict[str, bool], dict[str, str]]:
        """Answer content checks: rel -> same, and rel -> local xxh3 for what was hashed."""
        same: dict[str, bool] = {}
        digests: dict[str, str] = {}
        s3 = await self.pool.get(target.profile)
        root = target.local

        async def one(check: Check) -> None:
            rel = check.rel
            path = root / rel if rel else root
            if check.kind is CheckKind.LOCAL_VS_RECORD:
                async with self.hash_limiter:
                    h = await anyio.to_thread.run_sync(file_digests, path, False)
                digests[rel] = h.xxh3
                same[rel] = h.xxh3 == src.records[rel].xxh3
                return
            obj = src.remote.files[rel]
            if is_md5_etag(obj.etag):
                async with self.hash_limiter:
                    h = await anyio.to_thread.run_sync(file_digests, path, True)
                digests[rel] = h.xxh3
                same[rel] = h.md5 == obj.etag
                return
            async with self.limiter:
                head = await s3.head(target.url.bucket, obj.key)
            expected = (head or {}).get("Metadata", {}).get(META_XXH3)
            if not expected:
                same[rel] = False
                return
            async with self.hash_limiter:
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

    async def _plan(self, target: Target, direction: str, delete: bool, exclude: Excluder,
                    shard: tuple[int, int] | None = None) -> tuple[_Sources, Plan, dict[str, str]]:
        src = await self._gather(target, direction=direction)
        if direction == "download" and not src.single:
            await self._use_snapshot(target, src)
        if shard is not None and not src.single:
            files = src.remote.files
            chosen = shard_members({r: f.size for r, f in files.items() if not exclude.excluded(r)}, *shard)
            src.remote = RemoteTree({r: f for r, f in files.items() if r in chosen}, src.remote.markers)

        def run(evidence: Mapping[str, bool] | None) -> Plan:
            if direction == "download":
                return plan_download(src.prefix, src.remote, src.local, src.records, delete=delete,
                                     exclude=exclude, evidence=evidence)
            return plan_upload(src.prefix, src.local, src.remote, src.records, delete=delete,
                               exclude=exclude, evidence=evidence)

        plan = run(None)
        digests: dict[str, str] = {}
        if plan.checks:
            evidence, digests = await self._evidence(target, src, plan.checks, direction)
            plan = run(evidence)
        return src, plan, digests

    @staticmethod
    def describe(target: Target, src: _Sources, plan: Plan, direction: str) -> TransferPlan:
        url = target.url

        def remote_name(rel: str) -> str:
            return url.child(src.prefix + rel)

        def local_name(rel: str) -> str:
            return str(target.local / rel) if rel else str(target.local)

        if direction == "download":
            return TransferPlan.from_plans([(plan, remote_name, local_name)])
        return TransferPlan.from_plans([(plan, local_name, remote_name)])

    # ------------------------------------------------------------------ download

    async def plan_download(self, target: Target, *, delete: bool, exclude: Excluder,
                            shard: tuple[int, int] | None = None) -> TransferPlan:
        src, plan, _ = await self._plan(target, "download", delete, exclude, shard)
        if src.empty:
            raise NotFoundError(f"{target.url}: no objects under this prefix", url=str(target.url))
        return self.describe(target, src, plan, "download")

    async def download(self, target: Target, *, delete: bool, exclude: Excluder, allow_empty: bool = False,
                       shard: tuple[int, int] | None = None) -> int:
        """Make ``target.local`` an exact mirror of ``target.url`` (or of one shard of it).

        Returns:
            The bytes the mirrored tree holds.
        """
        async with root_lock(self.private, target.local, self.options.lock_timeout):
            src, plan, digests = await self._plan(target, "download", delete, exclude, shard)
            if src.empty:
                if not allow_empty:
                    raise NotFoundError(f"{target.url}: no objects under this prefix", url=str(target.url))
                return 0  # sync() on a first run: the upload registration prepares the path
            await self._run_download(target, src, plan, digests)
            return sum(f.size for r, f in src.remote.files.items() if not exclude.excluded(r))

    async def _run_download(self, target: Target, src: _Sources, plan: Plan, digests: dict[str, str]) -> None:
        s3 = await self.pool.get(target.profile)
        root = target.local
        confine = root if not src.single else root.parent
        created = await anyio.to_thread.run_sync(_local.missing_top, root)  # folders this run makes
        staging = await anyio.to_thread.run_sync(_local.Staging.for_root, root, self.private)
        resumable = frozenset(staging.resume_path(c.key).name for c in plan.copies
                              if not c.is_dir and c.size >= self.options.ranged_threshold)
        await anyio.to_thread.run_sync(staging.clean, resumable)
        store = await self.store()
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
        with self.progress.bar(f"download {target.url}", total) as bar:

            async def one(c: Copy) -> None:
                try:
                    if c.is_dir:
                        await anyio.to_thread.run_sync(_mkdir, local_path(c.rel))
                        return
                    listed = src.remote.files[c.rel].etag
                    rec = await self._download_file(s3, target, c, local_path(c.rel), confine, staging, bar.update,
                                                     listed)
                    pending.append((c.rel, rec))
                    if len(pending) >= RECORD_BATCH:
                        await flush()
                except Exception as exc:
                    failures.append(Failure(target.url.child(c.key), translate(exc, target.url.child(c.key))))

            async with anyio.create_task_group() as tg:
                for c in plan.copies:
                    if c.is_dir or c.size < self.options.ranged_threshold:
                        await self._start_limited(tg, one, c)
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

    async def _start_limited(self, tg: TaskGroup, fn: Callable[[Copy], Any], c: Copy) -> None:
        """Start ``fn(c)`` holding a limiter slot; waits for a slot so tasks never pile up."""
        await self.limiter.acquire()

        async def run() -> None:
            try:
                await fn(c)
            finally:
                self.limiter.release()

        tg.start_soon(run)

    async def _download_file(
        self, s3: Any, target: Target, c: Copy, final: Path, confine: Path, staging: _local.Staging,
        progress: Callable[[int], object], listed_etag: str = "",
    ) -> Record:
        bucket = target.url.bucket
        if c.size >= self.options.ranged_threshold:
            tmp = await anyio.to_thread.run_sync(staging.resume_path, c.key)
            try:
                etag, meta, xxh = await self._ranged_get(s3, bucket, c, tmp, progress, listed_etag)
                lf = await anyio.to_thread.run_sync(_place, tmp, final, confine)
            except OSError as exc:
                if exc.errno in _DISK_ERRNOS:  # a full or read-only disk: give the space back
                    await anyio.to_thread.run_sync(_Resume.forget, tmp)
                raise
            except Exception:
                raise  # the partial file and its journal stay for the next run to resume
            except BaseException:
                _Resume.forget(tmp)  # Ctrl-C: remove every temporary file
                raise
            await anyio.to_thread.run_sync(_Resume.forget, tmp)
            return Record(c.key, etag, c.size, lf.size, lf.mtime_ns, lf.inode, xxh, meta.get("__last_modified", ""))
        tmp = await anyio.to_thread.run_sync(staging.new_path)
        try:
            etag, meta, xxh, lf = await self._streamed_get(s3, bucket, c, tmp, confine, final, progress)
        except BaseException:
            _local.Staging.discard(tmp)
            raise
        return Record(c.key, etag, c.size, lf.size, lf.mtime_ns, lf.inode, xxh, meta.get("__last_modified", ""))

    def _verify(self, url: str, h: Hasher, etag: str, meta: Mapping[str, str], got: int, size: int) -> None:
        if got != size:
            raise IntegrityError(f"{url}: expected {size} bytes, received {got}")
        expected = meta.get(META_XXH3)
        if expected and expected != h.xxh3:
            raise IntegrityError(f"{url}: content does not match its pos3 fingerprint; the file was not placed")
        if not expected and h.md5 is not None and h.md5 != etag:
            raise IntegrityError(f"{url}: content does not match its MD5 ETag; the file was not placed")

    async def _streamed_get(
        self, s3: Any, bucket: str, c: Copy, tmp: Path, confine: Path, final: Path,
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
                            if c.size <= SMALL_OBJECT:
                                chunks.append(chunk)  # hashed with the write, off the loop
                            else:
                                if fh is None:
                                    fh = await anyio.to_thread.run_sync(open, tmp, "wb")
                                await anyio.to_thread.run_sync(_hash_and_write, h, fh, chunk)
                    if got < c.size:
                        raise EndpointError(f"{url}: body ended after {got} of {c.size} bytes", url=url)
                    break
                except _BODY_ERRORS as exc:
                    attempts += 1
                    if attempts > self.options.body_retries or h is None:
                        raise
                    log.info("%s: body broke at byte %d (%s); resuming", url, got, exc)
                    await anyio.sleep(min(0.1 * 2**attempts, 2.0))
            assert h is not None
            hasher, size = h, c.size

            def verify() -> None:
                self._verify(url, hasher, etag, meta, got, size)

            if fh is None:
                data = b"".join(chunks)
                lf = await anyio.to_thread.run_sync(_check_write_and_place, h, data, verify, tmp, final, confine)
            else:
                verify()
                await anyio.to_thread.run_sync(fh.close)
                fh = None
                lf = await anyio.to_thread.run_sync(_place, tmp, final, confine)
            return etag, meta, h.xxh3, lf
        except OSError as exc:
            _raise_named(exc, final, url)
        finally:
            if fh is not None:
                with contextlib.suppress(OSError):
                    fh.close()

    async def _ranged_get(
        self, s3: Any, bucket: str, c: Copy, tmp: Path, progress: Callable[[int], object], listed_etag: str = ""
    ) -> tuple[str, dict[str, str], str]:
        """Parallel ranged GETs into one file, then the whole file is checked.

        Completed parts are journaled beside the partial file: a run killed midway resumes with
        the missing parts only, guarded by the ETag (If-Match); a changed object starts over.
        """
        url = f"s3://{bucket}/{c.key}"
        part = self._download_part(c.size)
        count = math.ceil(c.size / part)
        journal = await anyio.to_thread.run_sync(_Resume.load, tmp, c.key, c.size, listed_etag, part)
        try:
            return await self._ranged_parts(s3, bucket, c, tmp, progress, journal, count, url)
        except S3Error as exc:
            if exc.code not in ("PreconditionFailed", "412"):
                raise
        # The object changed since the parts on disk were fetched (If-Match failed): start over.
        log.info("%s changed since its partial download; starting over", url)
        journal = await anyio.to_thread.run_sync(_Resume.load, tmp, c.key, c.size, "", part)
        return await self._ranged_parts(s3, bucket, c, tmp, progress, journal, count, url)

    def _download_part(self, size: int) -> int:
        """Range size for a large object: a quarter of it, at least ``part_size`` and at most
        64 MiB. Few, large ranges cost the server least (some servers read the whole object per
        range); several objects still download side by side, and memory does not grow (bodies
        are streamed in 1 MiB chunks)."""
        if self.options.download_part_size is not None:
            return self.options.download_part_size
        return max(self.options.part_size, min(64 << 20, math.ceil(size / 4)))

    async def _ranged_parts(
        self, s3: Any, bucket: str, c: Copy, tmp: Path, progress: Callable[[int], object], journal: _Resume,
        count: int, url: str,
    ) -> tuple[str, dict[str, str], str]:
        part = journal.part
        info: dict[str, Any] = {"etag": journal.etag, "meta": journal.meta} if journal.etag else {}
        fd = await anyio.to_thread.run_sync(journal.open)
        failures: list[BaseException] = []
        save = anyio.Lock()
        landed = [anyio.Event()]  # set (and replaced) each time a part is complete on disk
        hashed: dict[str, Hasher] = {}

        async def follow() -> None:
            """Fingerprint the file in order while later parts still arrive (no pass at the end)."""
            etag, meta = info["etag"], info["meta"]
            h = Hasher(md5=is_md5_etag(etag) and META_XXH3 not in meta)
            pos = 0
            while pos < c.size:
                index = pos // part
                while index not in journal.done:
                    await landed[0].wait()
                end = min(c.size, (index + 1) * part)
                async with self.hash_limiter:
                    await anyio.to_thread.run_sync(_hash_range, fd, h, pos, end)
                pos = end
            hashed["h"] = h

        try:
            for index in journal.done:
                progress(min(c.size, (index + 1) * part) - index * part)

            async def fetch(index: int) -> None:
                start = index * part
                end = min(c.size, start + part) - 1
                pos = start
                attempts = 0
                while pos <= end:
                    try:
                        async with self.limiter, s3.get(bucket, c.key, start=pos, end=end,
                                                        if_match=info.get("etag")) as (body, resp):
                            if "etag" not in info:
                                info["etag"] = str(resp.get("ETag", "")).strip('"')
                                info["meta"] = dict(resp.get("Metadata") or {})
                            while pos <= end:
                                chunk = await body.read(min(CHUNK, end + 1 - pos))
                                if not chunk:
                                    break
                                await anyio.to_thread.run_sync(os.pwrite, fd, chunk, pos)
                                pos += len(chunk)
                                progress(len(chunk))
                        if pos <= end:
                            raise EndpointError(f"{url}: part body ended early at byte {pos}", url=url)
                    except _BODY_ERRORS:
                        attempts += 1
                        if attempts > self.options.body_retries:
                            raise
                        await anyio.sleep(min(0.1 * 2**attempts, 2.0))
                async with save:
                    await anyio.to_thread.run_sync(journal.mark_done, index, info["etag"], info["meta"])
                landed[0].set()
                landed[0] = anyio.Event()

            async def guarded(index: int) -> None:
                try:
                    await fetch(index)
                except Exception as exc:
                    failures.append(exc)
                    tg.cancel_scope.cancel()

            todo = [i for i in range(count) if i not in journal.done]
            if todo and "etag" not in info:
                # The first part learns the ETag that guards the others (If-Match).
                await fetch(todo.pop(0))
            async with anyio.create_task_group() as tg:
                for i in todo:
                    tg.start_soon(guarded, i)
                tg.start_soon(follow)
            if failures:
                raise failures[0]
        except OSError as exc:
            _raise_named(exc, tmp, url)
        finally:
            await anyio.to_thread.run_sync(os.close, fd)
        etag, meta = info["etag"], info["meta"]
        h = hashed["h"]
        size = await anyio.to_thread.run_sync(lambda: os.stat(tmp).st_size)
        try:
            self._verify(url, h, etag, meta, size, c.size)
        except IntegrityError:
            await anyio.to_thread.run_sync(_Resume.forget, tmp)  # never resume from damaged bytes
            raise
        return etag, meta, h.xxh3

    # ------------------------------------------------------------------ upload

    async def plan_upload(self, target: Target, *, delete: bool, exclude: Excluder) -> TransferPlan:
        src, plan, _ = await self._plan(target, "upload", delete, exclude)
        return self.describe(target, src, plan, "upload")

    async def upload(self, target: Target, *, delete: bool, exclude: Excluder, settle: float | None = None) -> None:
        """Make ``target.url`` an exact copy of ``target.local`` (a missing local path: no-op).

        With ``settle``, files modified less than ``settle`` seconds ago are left for a later
        sync (a periodic upload never sends a file that is still being written).
        """
        exists = await anyio.to_thread.run_sync(target.local.exists)
        if not exists:
            log.info("%s does not exist; nothing to upload to %s", target.local, target.url)
            return
        async with root_lock(self.private, target.local, self.options.lock_timeout):
            await self._abort_stale_multipart(target)
            src, plan, digests = await self._plan(target, "upload", delete, exclude)
            if settle:
                cutoff = time.time_ns() - int(settle * 1e9)
                recent = {c.rel for c in plan.copies if not c.is_dir and src.local.files[c.rel].mtime_ns > cutoff}
                if recent:
                    log.debug("%s: %d files still changing; left for a later sync", target.local, len(recent))
                    plan = dataclasses.replace(plan, copies=tuple(c for c in plan.copies if c.rel not in recent))
            await self._run_upload(target, src, plan, digests)

    async def _abort_stale_multipart(self, target: Target) -> None:
        """Abort multipart uploads below the target that a killed pos3 process left open."""
        folder = self.private / "multipart"
        stale = await anyio.to_thread.run_sync(_journal_stale, folder, target.url.bucket, target.url.stem)
        if not stale:
            return
        s3 = await self.pool.get(target.profile)
        for entry, key, upload_id in stale:
            if await s3.abort_multipart(target.url.bucket, key, upload_id, strict=True):
                log.info("aborted a multipart upload of s3://%s/%s left open by a killed run", target.url.bucket, key)
                await anyio.to_thread.run_sync(_journal_remove, entry)

    async def _run_upload(self, target: Target, src: _Sources, plan: Plan, digests: dict[str, str]) -> None:
        s3 = await self.pool.get(target.profile)
        store = await self.store()
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
            pending.append((rel, Record(obj.key, obj.etag, obj.size, lf.size, lf.mtime_ns, lf.inode, xxh,
                                        obj.last_modified)))
        for rel in plan.refresh:
            rec, lf = src.records[rel], src.local.files[rel]
            pending.append((rel, Record(rec.key, rec.etag, rec.size, lf.size, lf.mtime_ns, lf.inode,
                                        digests.get(rel, rec.xxh3), rec.last_modified, rec.checksum)))

        total = sum(c.size for c in plan.copies)
        with self.progress.bar(f"upload {target.url}", total) as bar:

            async def one(c: Copy) -> None:
                url = target.url.child(c.key)
                try:
                    if c.is_dir:
                        await s3.put(bucket, c.key, b"", {})
                        return
                    rec = await self._upload_file(s3, bucket, c, local_path(c.rel), bar.update)
                    if rec is not None:
                        pending.append((c.rel, rec))
                except _Unsettled:
                    log.info("%s is still being written; it will be uploaded by a later sync", local_path(c.rel))
                except Exception as exc:
                    failures.append(Failure(url, translate(exc, url)))

            async with anyio.create_task_group() as tg:
                for c in plan.copies:
                    if c.is_dir or c.size <= self.options.multipart_threshold:
                        await self._start_limited(tg, one, c)
                    else:
                        tg.start_soon(one, c)

        gone = [d.rel for d in plan.deletes]
        if plan.deletes:
            if failures:
                log.warning("%s: not deleting %d remote objects because uploads failed", target.url, len(gone))
                gone = []
            else:
                keys = [d.key for d in plan.deletes]
                for i in range(0, len(keys), 1000):
                    async with self.limiter:
                        for key, err in await s3.delete_many(bucket, keys[i : i + 1000]):
                            failures.append(Failure(target.url.child(key), err))
        await anyio.to_thread.run_sync(store.write, root, pending, gone)
        if failures:
            raise TransferError.of("upload", failures)

    async def _upload_file(
        self, s3: Any, bucket: str, c: Copy, path: Path, progress: Callable[[int], object]
    ) -> Record | None:
        """Upload one file; ``None`` when it changed while being read (next sync sends it again)."""
        url = f"s3://{bucket}/{c.key}"
        if c.size <= self.options.multipart_threshold:
            async with self.body_slots if c.size > SMALL_OBJECT else contextlib.nullcontext():
                data, before, xxh, md5 = await anyio.to_thread.run_sync(_read_for_upload, path)
                if self.rate:
                    await self.rate.acquire(len(data))
                etag = await _twice(lambda: s3.put(bucket, c.key, data, {META_XXH3: xxh}, md5=md5))
                progress(len(data))
                size = len(data)
                del data
        else:
            before = await anyio.to_thread.run_sync(_local.stat_file, path)
            async with self.hash_limiter:
                xxh = (await anyio.to_thread.run_sync(file_digests, path, False)).xxh3
            size = before.size
            part = max(self.options.part_size, math.ceil(size / 10000))
            count = max(1, math.ceil(size / part))
            upload_id = await s3.create_multipart(bucket, c.key, {META_XXH3: xxh})
            _IN_FLIGHT.add(upload_id)
            journal = await anyio.to_thread.run_sync(_journal_add, self.private / "multipart", bucket, c.key,
                                                     upload_id)
            etags: list[str] = [""] * count
            try:

                async def send(index: int) -> None:
                    async with self.limiter, self.body_slots:
                        data, md5 = await anyio.to_thread.run_sync(_pread, path, index * part, part)
                        if self.rate:
                            await self.rate.acquire(len(data))
                        etags[index] = await _twice(
                            lambda: s3.upload_part(bucket, c.key, upload_id, index + 1, data, md5=md5))
                        progress(len(data))

                await run_all(*(functools.partial(send, i) for i in range(count)))
                # Never complete an object from bytes of a file that changed meanwhile.
                now = await anyio.to_thread.run_sync(_local.stat_file, path)
                if not _same_state(before, now):
                    raise _Unsettled(str(path))
                etag = await s3.complete_multipart(bucket, c.key, upload_id, etags)
            except BaseException:
                if await s3.abort_multipart(bucket, c.key, upload_id, strict=True):
                    with anyio.CancelScope(shield=True):
                        await anyio.to_thread.run_sync(_journal_remove, journal)
                raise
            finally:
                _IN_FLIGHT.discard(upload_id)
            await anyio.to_thread.run_sync(_journal_remove, journal)
        after = await anyio.to_thread.run_sync(_local.stat_file, path)
        if (after.size, after.mtime_ns) != (before.size, before.mtime_ns) or after.size != size:
            log.warning("%s changed while it was uploaded to %s; it will be sent again next sync", path, url)
            return None
        return Record(c.key, etag, size, before.size, before.mtime_ns, before.inode, xxh)

    # ------------------------------------------------------------------ atomic snapshots

    async def _read_small(self, s3: Any, bucket: str, key: str) -> bytes:
        async with self.limiter, s3.get(bucket, key) as (body, _):
            data: bytes = await body.read()
            return data

    async def _newest_snapshot(
        self, s3: Any, bucket: str, layout: SnapshotLayout, keys: Mapping[str, RemoteFile]
    ) -> Manifest | None:
        """The newest commit below ``layout`` whose objects all exist in ``keys`` (by key)."""
        seqs = sorted((seq, k) for k in keys if (seq := layout.commit_seq(k)) is not None)
        for _, key in reversed(seqs):
            manifest = Manifest.from_json(await self._read_small(s3, bucket, key), f"s3://{bucket}/{key}")
            found = newest_complete(layout, [manifest], keys)
            if found is not None:
                return found
        return None

    async def _use_snapshot(self, target: Target, src: _Sources) -> None:
        """If the prefix was published atomically, mirror its newest complete commit only."""
        layout = SnapshotLayout(src.prefix)
        by_key = {f.key: f for f in src.remote.files.values()}
        if not any(layout.commit_seq(k) is not None for k in by_key):
            return
        s3 = await self.pool.get(target.profile)
        manifest = await self._newest_snapshot(s3, target.url.bucket, layout, by_key)
        if manifest is None:
            raise NotFoundError(f"{target.url}: no complete snapshot (a publish is under way?)", url=str(target.url))
        files: dict[str, RemoteFile] = {}
        for rel, (xxh3, size) in manifest.files.items():
            obj = by_key[layout.object_key(xxh3)]
            files[rel] = RemoteFile(obj.key, size, obj.etag, obj.last_modified)
        src.remote = RemoteTree(files, frozenset(manifest.dirs))

    async def publish(self, target: Target, *, delete: bool, exclude: Excluder, settle: float | None = None) -> None:
        """Upload a folder as one atomic snapshot: missing objects first, the commit last.

        Readers that `download` the prefix see the previous snapshot or this one, never a mix.
        With ``settle``, nothing is published while a file changed less than ``settle`` s ago.
        """
        root = target.local
        if await anyio.to_thread.run_sync(root.is_file):
            # One object: a single PUT (or a completed multipart upload) is atomic already.
            return await self.upload(target, delete=delete, exclude=exclude, settle=settle)
        if not await anyio.to_thread.run_sync(root.is_dir):
            log.info("%s does not exist; nothing to publish to %s", root, target.url)
            return
        url, bucket = target.url, target.url.bucket
        layout = SnapshotLayout(url.dir_prefix)
        s3 = await self.pool.get(target.profile)
        store = await self.store()
        async with root_lock(self.private, root, self.options.lock_timeout):
            box: dict[str, Any] = {}

            async def do_list() -> None:
                box["listing"] = await s3.list_all(bucket, layout.root)

            async def do_scan() -> None:
                box["local"] = await anyio.to_thread.run_sync(_local.scan, root)

            async def do_records() -> None:
                box["records"] = await anyio.to_thread.run_sync(store.load, root)

            await run_all(do_list, do_scan, do_records)
            local: LocalTree = box["local"]
            records: dict[str, Record] = box["records"]
            keys = {f.key: f for f in box["listing"].files}
            previous = await self._newest_snapshot(s3, bucket, layout, keys)
            files = {r: f for r, f in local.files.items() if not exclude.excluded(r)}
            if settle:
                cutoff = time.time_ns() - int(settle * 1e9)
                if any(f.mtime_ns > cutoff for f in files.values()):
                    log.debug("%s: files still changing; publish left for a later sync", root)
                    return

            digests: dict[str, str] = {}

            async def fingerprint(rel: str, lf: LocalFile) -> None:
                rec = records.get(rel)
                if rec is not None and rec.same_stat(lf) and rec.key == layout.object_key(rec.xxh3):
                    digests[rel] = rec.xxh3
                    return
                async with self.hash_limiter:
                    digests[rel] = (await anyio.to_thread.run_sync(file_digests, root / rel, False)).xxh3

            await run_all(*(functools.partial(fingerprint, rel, lf) for rel, lf in files.items()))

            failures: list[Failure] = []
            pending: list[tuple[str, Record]] = []
            uploaded: dict[str, str] = {}  # object key -> etag
            wanted: dict[str, tuple[str, int]] = {}
            for rel, lf in sorted(files.items()):
                key = layout.object_key(digests[rel])
                if key not in keys and key not in wanted:
                    wanted[key] = (rel, lf.size)
            total = sum(size for _, size in wanted.values())
            with self.progress.bar(f"publish {url}", total) as bar:

                async def send(c: Copy) -> None:
                    blob = c.key
                    try:
                        rec = await self._upload_file(s3, bucket, c, root / c.rel, bar.update)
                        if rec is None or layout.object_key(rec.xxh3) != blob:
                            # The file changed after it was fingerprinted: never keep a misnamed object.
                            await s3.delete_many(bucket, [blob])
                            raise _Unsettled(str(root / c.rel))
                        uploaded[blob] = rec.etag
                    except _Unsettled as exc:
                        failures.append(Failure(str(root / c.rel), RuntimeError(f"{exc}: changed while publishing")))
                    except Exception as exc:
                        failures.append(Failure(url.child(blob), translate(exc, url.child(blob))))

                async with anyio.create_task_group() as tg:
                    for blob, (rel, size) in wanted.items():
                        c = Copy(rel, blob, size, Reason.NEW)
                        if size <= self.options.multipart_threshold:
                            await self._start_limited(tg, send, c)
                        else:
                            tg.start_soon(send, c)
            if failures:
                raise TransferError.of("upload", failures)

            entries = {rel: (digests[rel], lf.size) for rel, lf in files.items()}
            if not delete and previous is not None:
                for rel, entry in previous.files.items():
                    entries.setdefault(rel, entry)
            nonempty = {a for rel in [*files, *local.dirs] for a in ancestors(rel)}
            dirs = tuple(sorted(d for d in local.dirs - nonempty if not exclude.excluded(d)))
            top = max((seq for k in keys if (seq := layout.commit_seq(k)) is not None), default=0)
            manifest = Manifest(top + 1, entries, dirs)
            if not manifest.same_content(previous):
                async with self.limiter:
                    await s3.put(bucket, layout.commit_key(manifest.seq), manifest.to_json(), {})
                kept = [manifest] + ([previous] if previous is not None else [])
                commit_keys = [k for k in keys if layout.commit_seq(k) is not None]
                objects = [k for k in [*keys, *uploaded] if k.startswith(layout.objects)]
                junk = garbage(layout, commit_keys, kept, objects)
                for i in range(0, len(junk), 1000):
                    async with self.limiter:
                        for key, err in await s3.delete_many(bucket, junk[i : i + 1000]):
                            log.warning("could not remove old snapshot data %s: %s", url.child(key), err)
            for rel, lf in files.items():
                blob = layout.object_key(digests[rel])
                etag = uploaded.get(blob) or (keys[blob].etag if blob in keys else "")
                pending.append((rel, Record(blob, etag, lf.size, lf.size, lf.mtime_ns, lf.inode, digests[rel])))
            await anyio.to_thread.run_sync(store.write, root, pending, ())

    # ------------------------------------------------------------------ listing

    async def ls_entries(self, url: S3URL, profile: Profile | None, recursive: bool) -> list[ListEntry]:
        """The names `ls` returns, in the same order, with each object's size and last-modified time."""
        s3 = await self.pool.get(profile)
        prefix = url.dir_prefix
        if not recursive:
            files, dirs = await s3.list_level(url.bucket, prefix)
            out = [ListEntry(url.child(f.key), False, f.size, f.last_modified) for f in files if f.key != prefix]
            out += [ListEntry(url.child(d.rstrip("/")), True) for d in dirs]
            if not out and url.stem and not url.trailing_slash:
                # Not a folder: perhaps the URL names one object, as `aws s3 ls` would show it.
                head = await s3.head(url.bucket, url.stem)
                if head is not None:
                    obj = _head_file(url.stem, head)
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
