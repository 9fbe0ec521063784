"""Large downloads: parallel ranged GETs into one file, with a resume journal beside it.

Completed parts are journaled beside the partial file: a run killed midway resumes with the
missing parts only, guarded by the ETag (If-Match); a changed object starts over. The file is
fingerprinted in order while later parts still arrive, then checked as a whole.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

import anyio

from .. import _policy
from .._errors import EndpointError, IntegrityError, NotFoundError, S3Error, translate
from .._hashing import CHUNK, Hasher
from .._plan import Copy
from .._s3 import META_XXH3
from .context import Resources
from .place import LAST_MODIFIED, hash_range, last_modified, raise_named

__all__ = ["Resume", "Stall", "VersionChanged", "ranged_get", "verify"]

ETAG_IS_MD5 = "__etag_is_md5"  # journaled: whether the ETag of the parts on disk is their MD5

log = logging.getLogger("pos3")

CLEANUP_BOUND = 30.0  # seconds the shielded close of a partial file may take under cancellation


class Resume:
    """The journal of a partial large download: which parts of which object version are on disk."""

    def __init__(self, data: Path, key: str, size: int, etag: str, part: int, meta: dict[str, str],
                 done: set[int]) -> None:
        self.data, self.key, self.size, self.etag, self.part = data, key, size, etag, part
        self.meta, self.done = meta, done

    @staticmethod
    def journal_path(data: Path) -> Path:
        return data.with_suffix(".json")

    @classmethod
    def _found(cls, data: Path, key: str, size: int, etag: str, part: int | None) -> dict[str, Any] | None:
        """The journal of ``data`` if it describes this object version (and ``part`` size, if given)."""
        try:
            raw = json.loads(cls.journal_path(data).read_bytes())
            found = (raw["key"], raw["size"], raw["etag"], raw["part"])
            wanted = (key, size, etag, raw["part"] if part is None else part)
            if type(raw["part"]) is int and raw["part"] > 0 and _policy.journal_fits(found, wanted,
                                                                                     os.stat(data).st_size):
                return dict(raw)
        except (OSError, ValueError, KeyError, TypeError):
            pass
        return None

    @classmethod
    def part_on_disk(cls, data: Path, key: str, size: int, etag: str) -> int | None:
        """The range size of a partial download of this object version left on disk, if any.

        A resumed download keeps the ranges it started with, whatever the batch around it now.
        """
        raw = cls._found(data, key, size, etag, None)
        return None if raw is None else int(raw["part"])

    @classmethod
    def load(cls, data: Path, key: str, size: int, etag: str, part: int) -> Resume:
        """The journal of ``data`` if it matches this object version and part size, else a new one."""
        raw = cls._found(data, key, size, etag, part)
        try:
            if raw is not None:
                return cls(data, key, size, etag, part, dict(raw["meta"]), {int(i) for i in raw["done"]})
        except (ValueError, KeyError, TypeError):
            pass
        cls.forget(data)
        return cls(data, key, size, "", part, {}, set())

    def open(self) -> int:
        """Open the partial file for writing and reading (created at full size when new)."""
        fd = os.open(self.data, os.O_RDWR | os.O_CREAT, 0o644)  # read back by the fingerprinting
        if not self.done:
            # Emptied only when it holds old bytes: a truncation to zero makes ext4 write the new
            # bytes out at close (auto_da_alloc), and the state store's next fsync waits for them
            # (measured: 0.1 s per 128 MiB file, 0.45 s at the end of a 512 MiB download).
            if os.fstat(fd).st_size:
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


def verify(url: str, h: Hasher, etag: str, meta: Mapping[str, str], got: int, size: int,
           seen: Collection[str] = ()) -> None:
    """Check a received body against its size and known checksum (see `_policy.check_body`)."""
    _policy.check_body(url, got=got, size=size, xxh3=h.xxh3, md5=h.md5, etag=etag,
                       expected_xxh3=meta.get(META_XXH3), seen_mismatch=seen)


class Stall:
    """The stall guard of one body: a body silent for ``stall_timeout`` seconds is a broken body.

    One cancel scope for all the body's reads: its deadline is moved before each read and lifted
    after it (awaits between reads are not timed), a third of the cost of a scope per read
    (``fail_after``). Leaving the block after a stall raises `EndpointError`.
    """

    def __init__(self, stall_timeout: float, url: str) -> None:
        self._timeout = stall_timeout
        self._url = url
        self._scope = anyio.CancelScope()

    def __enter__(self) -> Stall:
        self._scope.__enter__()
        return self

    def __exit__(self, *exc: Any) -> bool:
        swallowed = bool(self._scope.__exit__(*exc))
        if self._scope.cancelled_caught:
            raise EndpointError(f"{self._url}: no byte for {self._timeout:g} s (stalled)", url=self._url)
        return swallowed

    async def read(self, body: Any, size: int) -> bytes:
        """The next chunk of ``body`` (at most ``size`` bytes; empty at its end)."""
        self._scope.deadline = anyio.current_time() + self._timeout
        try:
            chunk: bytes = await body.read(size)
        finally:
            self._scope.deadline = math.inf
        return chunk


class VersionChanged(S3Error):
    """The object changed since it was listed (If-Match failed, or another total size)."""


async def ranged_get(
    res: Resources, s3: Any, bucket: str, c: Copy, tmp: Path, progress: Callable[[int], object],
    listed_etag: str = "", together: int = 1,
) -> tuple[str, dict[str, str], str, int]:
    """Parallel ranged GETs into ``tmp``, then the whole file is checked.

    Ranges are sized for ``together`` large objects fetched side by side
    (`_policy.download_part_size`), unless a partial download of this version is on disk: it
    resumes with its own ranges.

    Every range, the first included, is tied to the listed version (``If-Match`` on the listed
    ETag, and the total size in ``Content-Range``). An object replaced since it was listed is
    looked up again (HEAD) and fetched whole, at most twice.

    A file failing its check is repaired, up to ``RetrySettings.repairs`` rounds: the parts are
    fetched again, and a part whose bytes came identical twice is kept while the others are
    fetched once more (`_policy.parts_to_refetch`); when every part agreed and the file still
    fails, it is fetched whole again with other range boundaries (`_policy.repair_part`).

    Returns:
        The ETag, the metadata, the xxh3 and the size of the object.
    """
    url = f"s3://{bucket}/{c.key}"
    settings = res.options.retry
    repairs = changes = shape = 0
    seen: dict[str, set[int]] = {}  # xxh3 of files whose MD5 was not the ETag -> the shapes that gave it
    votes: dict[int, list[str]] = {}  # part -> xxh3 of each fetch of it, in this shape
    keep: set[int] | None = None  # parts that agreed between fetches: not fetched again
    journal: Resume | None = None
    resumed = await anyio.to_thread.run_sync(Resume.part_on_disk, tmp, c.key, c.size, listed_etag)
    while True:
        base = resumed or _policy.download_part_size(c.size, res.options.part_size, res.options.download_part_size,
                                                     together)
        part = _policy.repair_part(base, c.size, shape)
        count = _policy.part_count(c.size, part)
        if journal is None or keep is None:
            journal = await anyio.to_thread.run_sync(Resume.load, tmp, c.key, c.size, listed_etag, part)
        else:
            journal = Resume(tmp, c.key, c.size, journal.etag, part, journal.meta, set(keep))
        fetched = set(range(count)) - journal.done
        other_shapes = frozenset(x for x, shapes in seen.items() if shapes - {shape})
        try:
            etag, meta, xxh = await _ranged_parts(res, s3, bucket, c, tmp, progress, journal, count, url,
                                                  listed_etag, other_shapes)
            return etag, meta, xxh, c.size
        except VersionChanged as exc:
            changes += 1
            if changes > 2:
                raise
            log.info("%s; fetching the new version", exc)
            head = await s3.head(bucket, c.key)  # retried through outages by the client
            if head is None:
                raise NotFoundError(f"{url}: deleted while it was downloaded", url=url, code="NoSuchKey") from exc
            c = Copy(c.rel, c.key, int(head.get("ContentLength", 0)), c.reason)
            listed_etag = str(head.get("ETag", "")).strip('"')
            journal = keep = resumed = None
            votes.clear()
        except IntegrityError as exc:
            if not _policy.may_repair(repairs, settings):
                await anyio.to_thread.run_sync(Resume.forget, tmp)  # never resume from damaged bytes
                raise
            repairs += 1
            if isinstance(exc, _policy.ETagMismatch):
                seen.setdefault(exc.xxh3, set()).add(shape)
            hashes = await anyio.to_thread.run_sync(part_hashes, tmp, part, c.size, sorted(fetched))
            for i, h in hashes.items():
                votes.setdefault(i, []).append(h)
            todo = _policy.parts_to_refetch(votes, count)
            if todo:
                keep = set(range(count)) - todo
            else:  # every part agreed with an earlier fetch: fetch it all again, cut elsewhere
                shape += 1
                votes.clear()
                journal = keep = None
                await anyio.to_thread.run_sync(Resume.forget, tmp)
            log.warning("%s; fetching %s again (%d of %d)", exc, f"{len(todo)} of {count} parts" if todo else "it",
                        repairs, settings.repairs)


def part_hashes(path: Path, part: int, size: int, indices: list[int]) -> dict[int, str]:
    """The xxh3 of each part in ``indices`` of a partial file (blocking; a worker thread)."""
    out: dict[int, str] = {}
    fd = os.open(path, os.O_RDONLY)
    try:
        for i in indices:
            start, end = _policy.part_span(i, part, size)
            h = Hasher()
            hash_range(fd, h, start, end + 1)
            out[i] = h.xxh3
    finally:
        os.close(fd)
    return out


async def _ranged_parts(
    res: Resources, s3: Any, bucket: str, c: Copy, tmp: Path, progress: Callable[[int], object], journal: Resume,
    count: int, url: str, listed_etag: str, seen: frozenset[str],
) -> tuple[str, dict[str, str], str]:
    part = journal.part
    settings = res.options.retry
    info: dict[str, Any] = {"etag": journal.etag, "meta": journal.meta} if journal.etag else {}
    fd = await anyio.to_thread.run_sync(journal.open)
    failures: list[BaseException] = []
    save = anyio.Lock()
    landed = [anyio.Event()]  # set (and replaced) each time a part is complete on disk
    hashed: dict[str, Hasher] = {}

    async def follow() -> None:
        """Fingerprint the file in order while later parts still arrive (no pass at the end)."""
        h: Hasher | None = None
        pos = 0
        while pos < c.size:
            index = pos // part
            while index not in journal.done:
                await landed[0].wait()
            if h is None:  # a part is on disk: the answer's ETag and metadata are known
                etag, meta = info["etag"], info["meta"]
                md5 = meta.get(ETAG_IS_MD5, "1") == "1" and _policy.etag_is_md5(etag)
                h = Hasher(md5=md5 and META_XXH3 not in meta)
            end = min(c.size, (index + 1) * part)
            async with res.hash_limiter:
                await anyio.to_thread.run_sync(hash_range, fd, h, pos, end)
            pos = end
        assert h is not None  # a ranged object is never empty
        hashed["h"] = h

    try:
        for index in journal.done:
            progress(_policy.part_length(index, part, c.size))

        async def fetch(index: int) -> None:
            pos, end = _policy.part_span(index, part, c.size)
            state = _policy.Attempts()
            while pos <= end:
                answered = False
                before = pos
                try:
                    await res.throttle.wait()
                    tag = info.get("etag") or listed_etag or None
                    async with res.limiter, s3.get(bucket, c.key, start=pos, end=end, if_match=tag,
                                                   checked=True) as (body, resp):
                        answered = True
                        res.throttle.ok()
                        total = _policy.content_range_total(str(resp.get("ContentRange") or ""))
                        if total is not None and total != c.size:
                            raise VersionChanged(f"{url}: the object changed since it was listed ({total} bytes, "
                                                 f"listed {c.size})", url=url, code="PreconditionFailed")
                        if "etag" not in info:
                            info["etag"] = str(resp.get("ETag", "")).strip('"')
                            info["meta"] = dict(resp.get("Metadata") or {})
                            md5 = _policy.etag_is_md5(info["etag"], sse=str(resp.get("ServerSideEncryption") or ""),
                                                      sse_customer=str(resp.get("SSECustomerAlgorithm") or ""))
                            info["meta"][ETAG_IS_MD5] = "1" if md5 else "0"  # journaled with the parts
                            info["meta"][LAST_MODIFIED] = last_modified(resp)
                        # Each read is written and counted at once: a body that breaks after
                        # some bytes has progressed, and the next attempt starts after them.
                        with Stall(settings.stall_timeout, url) as stall:
                            while pos <= end:
                                chunk = await stall.read(body, min(CHUNK, end + 1 - pos))
                                if not chunk:
                                    break
                                await res.in_thread(os.pwrite, fd, chunk, pos)
                                pos += len(chunk)
                                progress(len(chunk))
                    if pos <= end:
                        raise EndpointError(f"{url}: part body ended early at byte {pos}", url=url)
                except Exception as exc:
                    err = translate(exc, url)
                    if isinstance(err, VersionChanged):
                        raise
                    if isinstance(err, S3Error) and _policy.is_changed_version(err.code):
                        raise VersionChanged(f"{url}: the object changed since it was listed (If-Match failed)",
                                             url=url, code=err.code) from exc
                    found = await res.retrier.back_off(state, err, answered=answered, progressed=pos > before,
                                                       what=f"{url} at byte {pos}")
                    if found is None:
                        raise
                    state = found
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

        todo = _policy.parts_todo(count, journal.done)
        if todo and "etag" not in info and not listed_etag:
            # Without an ETag from the listing, the first part learns the one that guards the
            # others (If-Match); with one, every part is tied to the listed version from the start.
            await fetch(todo.pop(0))
        async with anyio.create_task_group() as tg:
            for i in todo:
                tg.start_soon(guarded, i)
            tg.start_soon(follow)
        if failures:
            raise failures[0]
    except OSError as exc:
        raise_named(exc, tmp, url)
    finally:
        # Shielded: under cancellation the first await of a `finally` would raise again and the
        # descriptor (and the disk space of the unlinked partial file) would leak. Bounded: a
        # close that hangs (a dead network mount) is abandoned to its thread.
        with anyio.CancelScope(shield=True) as scope:
            scope.deadline = anyio.current_time() + CLEANUP_BOUND
            await anyio.to_thread.run_sync(os.close, fd, abandon_on_cancel=True)
    etag, meta = info["etag"], info["meta"]
    h = hashed["h"]
    size = await anyio.to_thread.run_sync(lambda: os.stat(tmp).st_size)
    verify(url, h, etag, meta, size, c.size, seen)
    return etag, meta, h.xxh3
