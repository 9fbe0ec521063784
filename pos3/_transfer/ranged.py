"""Large downloads: parallel ranged GETs into one file, with a resume journal beside it.

Completed parts are journaled beside the partial file: a run killed midway resumes with the
missing parts only, guarded by the ETag (If-Match); a changed object starts over. The file is
fingerprinted in order while later parts still arrive, then checked as a whole.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import anyio

from .. import _policy
from .._errors import EndpointError, IntegrityError, S3Error
from .._hashing import CHUNK, Hasher, is_md5_etag
from .._plan import Copy
from .._s3 import META_XXH3
from .context import Resources
from .place import body_errors, hash_range, raise_named

__all__ = ["Resume", "ranged_get"]

log = logging.getLogger("pos3")


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
    def load(cls, data: Path, key: str, size: int, etag: str, part: int) -> Resume:
        """The journal of ``data`` if it matches this object version and part size, else a new one."""
        try:
            raw = json.loads(cls.journal_path(data).read_bytes())
            found = (raw["key"], raw["size"], raw["etag"], raw["part"])
            if _policy.journal_fits(found, (key, size, etag, part), os.stat(data).st_size):
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


def verify(url: str, h: Hasher, etag: str, meta: Mapping[str, str], got: int, size: int) -> None:
    """Check a received body against its size and known checksum (see `_policy.check_body`)."""
    _policy.check_body(url, got=got, size=size, xxh3=h.xxh3, md5=h.md5, etag=etag,
                       expected_xxh3=meta.get(META_XXH3))


async def ranged_get(
    res: Resources, s3: Any, bucket: str, c: Copy, tmp: Path, progress: Callable[[int], object],
    listed_etag: str = "",
) -> tuple[str, dict[str, str], str]:
    """Parallel ranged GETs into ``tmp``, then the whole file is checked.

    Returns:
        The ETag, the metadata and the xxh3 of the object.
    """
    url = f"s3://{bucket}/{c.key}"
    part = _policy.download_part_size(c.size, res.options.part_size, res.options.download_part_size)
    count = _policy.part_count(c.size, part)
    journal = await anyio.to_thread.run_sync(Resume.load, tmp, c.key, c.size, listed_etag, part)
    try:
        return await _ranged_parts(res, s3, bucket, c, tmp, progress, journal, count, url)
    except S3Error as exc:
        if not _policy.is_changed_version(exc.code):
            raise
    # The object changed since the parts on disk were fetched (If-Match failed): start over.
    log.info("%s changed since its partial download; starting over", url)
    journal = await anyio.to_thread.run_sync(Resume.load, tmp, c.key, c.size, "", part)
    return await _ranged_parts(res, s3, bucket, c, tmp, progress, journal, count, url)


async def _ranged_parts(
    res: Resources, s3: Any, bucket: str, c: Copy, tmp: Path, progress: Callable[[int], object], journal: Resume,
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
            async with res.hash_limiter:
                await anyio.to_thread.run_sync(hash_range, fd, h, pos, end)
            pos = end
        hashed["h"] = h

    try:
        for index in journal.done:
            progress(_policy.part_length(index, part, c.size))

        async def fetch(index: int) -> None:
            pos, end = _policy.part_span(index, part, c.size)
            attempts = 0
            while pos <= end:
                try:
                    async with res.limiter, s3.get(bucket, c.key, start=pos, end=end,
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
                except body_errors():
                    attempts += 1
                    if not _policy.may_retry_body(attempts, res.options.body_retries):
                        raise
                    await anyio.sleep(_policy.retry_delay(attempts))
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
        raise_named(exc, tmp, url)
    finally:
        await anyio.to_thread.run_sync(os.close, fd)
    etag, meta = info["etag"], info["meta"]
    h = hashed["h"]
    size = await anyio.to_thread.run_sync(lambda: os.stat(tmp).st_size)
    try:
        verify(url, h, etag, meta, size, c.size)
    except IntegrityError:
        await anyio.to_thread.run_sync(Resume.forget, tmp)  # never resume from damaged bytes
        raise
    return etag, meta, h.xxh3
