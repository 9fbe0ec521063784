"""The lifetime of a mirror: its engine and task group, the exit rules, and registering transfers.

`MirrorCore` is the base of `AsyncMirror`: it owns the `Engine` (clients, limits, state store),
the `Registry` of downloads and uploads, the `UploadScheduler`, and the cache pins. The public
class adds only the documented methods, which forward here.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from contextlib import AsyncExitStack
from pathlib import Path
from types import TracebackType
from typing import Self

import anyio

from ._background import UploadScheduler
from ._cache import Pin, prune
from ._clients import ClientOptions
from ._concurrency import connection_pool_size
from ._engine import Engine, EngineOptions
from ._errors import AsyncioRequiredError, NotFoundError
from ._exclude import Excluder
from ._policy import RetrySettings
from ._profiles import Profile
from ._progress import Progress
from ._registry import (
    Exclude,
    ProfileArg,
    Registry,
    UploadReg,
    check_interval,
    check_settle,
    is_local,
    prepare_upload_path,
    uploads_on_exit,
)
from ._shard import check_shard
from ._transfer.context import Target
from ._urls import S3URL

__all__ = ["MirrorCore", "cache_limit", "engine_options", "tls_override"]

log = logging.getLogger("pos3")


def engine_options(
    max_workers: int | None, max_upload_bytes_per_second: float | None, lock_timeout: float, connect_timeout: float,
    read_timeout: float, retry_mode: str, max_attempts: int, *, stall_timeout: float = 15.0,
    outage_budget: float = 60.0, ca_bundle: str | os.PathLike[str] | None = None, verify: bool = True,
) -> EngineOptions:
    """Validate the mirror's tuning arguments into `EngineOptions`."""
    if max_workers is not None and (isinstance(max_workers, bool) or not isinstance(max_workers, int)
                                    or max_workers < 1):
        raise ValueError(f"max_workers must be a positive integer or None, not {max_workers!r}")
    if max_upload_bytes_per_second is not None and not max_upload_bytes_per_second > 0:
        raise ValueError(
            f"max_upload_bytes_per_second must be positive or None, not {max_upload_bytes_per_second!r}"
        )
    if retry_mode not in ("standard", "adaptive", "legacy"):
        raise ValueError(f"retry_mode must be 'standard' or 'adaptive', not {retry_mode!r}")
    for name, value in (("stall_timeout", stall_timeout), ("outage_budget", outage_budget)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
    tls = tls_override(ca_bundle, verify)
    return EngineOptions(
        max_workers=max_workers,
        retry=RetrySettings(stall_timeout=float(stall_timeout), outage_budget=float(outage_budget)),
        max_upload_bytes_per_second=max_upload_bytes_per_second,
        lock_timeout=lock_timeout,
        clients=ClientOptions(
            max_pool_connections=connection_pool_size(max_workers),
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retry_mode=retry_mode,
            max_attempts=max_attempts,
            verify=tls,
        ),
    )


def tls_override(ca_bundle: str | os.PathLike[str] | None, verify: bool) -> bool | str | None:
    """The mirror's ``ca_bundle`` and ``verify`` as `ClientOptions.verify`: ``None`` keeps each profile's."""
    if not isinstance(verify, bool):
        raise ValueError(f"verify must be True or False, not {verify!r}")
    if ca_bundle is not None:
        path = os.fspath(ca_bundle) if isinstance(ca_bundle, str | os.PathLike) else None
        if not isinstance(path, str) or not path:
            raise ValueError(f"ca_bundle must be the path of a PEM file, not {ca_bundle!r}")
        if not verify:
            raise ValueError("ca_bundle has no effect with verify=False; set one of them")
        return path
    return None if verify else False


def cache_limit(cache_max_bytes: int | None) -> int | None:
    """The cache limit: the argument, else ``$POS3_CACHE_MAX_BYTES``, else none."""
    if cache_max_bytes is None and os.environ.get("POS3_CACHE_MAX_BYTES"):
        try:
            cache_max_bytes = int(os.environ["POS3_CACHE_MAX_BYTES"])
        except ValueError:
            raise ValueError(
                f"POS3_CACHE_MAX_BYTES={os.environ['POS3_CACHE_MAX_BYTES']!r} is not a whole number of bytes"
            ) from None
    if cache_max_bytes is not None and (isinstance(cache_max_bytes, bool) or cache_max_bytes < 0):
        raise ValueError(f"cache_max_bytes must be a non-negative number of bytes, not {cache_max_bytes!r}")
    return cache_max_bytes


class MirrorCore:
    """The state of one mirror and the work behind its public methods (see `AsyncMirror`)."""

    def __init__(self, options: EngineOptions, cache_root: Path, cache_max_bytes: int | None,
                 default_profile: Profile | None, show_progress: bool) -> None:
        self._options = options
        self.cache_root = cache_root
        self.cache_max_bytes = cache_max_bytes
        self.default_profile = default_profile
        self._pins: list[Pin] = []
        self._buckets_ok: set[tuple[Profile | None, str]] = set()
        self._progress = Progress(show_progress)
        self._engine: Engine | None = None
        self._stack: AsyncExitStack | None = None
        self._registry = Registry(self.cache_root, self.default_profile)
        self._scheduler = UploadScheduler(self._registry.uploads, lambda: self.engine)

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        if self._stack is not None:
            raise RuntimeError("this AsyncMirror is already open")
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            # trio (or another loop): aiobotocore would fail deep inside with "no running event loop".
            raise AsyncioRequiredError(
                "pos3.amirror() needs asyncio (aiobotocore runs only there), and no asyncio loop is running "
                "(trio?): use asyncio.run(), anyio.run(..., backend='asyncio'), or the blocking pos3.mirror()"
            ) from None
        stack = AsyncExitStack()
        self._tg = await stack.enter_async_context(anyio.create_task_group())
        self._engine = Engine(self.cache_root, self._options, self._progress)
        self._stack = stack
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        stack, self._stack = self._stack, None
        if stack is None:
            return
        self._scheduler.closing = True
        try:
            self._scheduler.cancel()
            todo, clean = uploads_on_exit(list(self._registry.uploads.values()), exc_type, exc)
            if todo:
                try:
                    await self._scheduler.sync(todo)
                except Exception as sync_exc:
                    if clean:
                        raise
                    log.error("pos3: upload on error exit failed: %s", sync_exc)
        finally:
            # Cancel the mirror's tasks (a background upload, shared downloads) and wait until
            # they have finished, their shielded cleanup included (aborting an open multipart
            # upload needs the client); only then close the clients and release the pins.
            self._tg.cancel_scope.cancel()
            try:
                await stack.__aexit__(None, None, None)
            finally:
                for pin in self._pins:
                    pin.release()
                self._pins.clear()
                if self._engine is not None:
                    await self._engine.aclose()
                    self._engine = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise RuntimeError("use the mirror inside 'async with pos3.amirror() as m:'")
        return self._engine

    # ------------------------------------------------------------------ internals

    async def _download(
        self, remote: str | os.PathLike[str], local: str | os.PathLike[str] | None, delete: bool,
        exclude: Exclude, profile: ProfileArg, *, allow_empty: bool, shard: tuple[int, int] | None = None,
        keep_local: bool = False,
    ) -> Path:
        if is_local(remote):
            return Path(remote).expanduser().resolve()
        assert isinstance(remote, str)
        engine = self.engine
        target = self._registry.target(remote, local, profile)
        excluder = Excluder.of(exclude)
        shard = check_shard(shard)
        params = (target.local, target.profile, bool(delete), excluder.patterns, allow_empty, shard)

        async def fetch() -> None:
            if not target.explicit_local:
                # Pinned before a byte moves: eviction (which takes the pins exclusively) can never
                # delete a tree while this mirror downloads or refreshes it.
                self._pins.append(await anyio.to_thread.run_sync(Pin, engine.private, target.local))
            size = await engine.download(target, delete=bool(delete), exclude=excluder, allow_empty=allow_empty,
                                         shard=shard, keep_local=keep_local)
            if not target.explicit_local and not allow_empty:
                await self._track(target.local, size)

        return await self._registry.download(target, params, fetch, self._tg)

    async def _track(self, tree: Path, size: int) -> None:
        """Remember a downloaded (and already pinned) cache tree's use; evict others past the limit."""
        engine = self.engine
        store = await engine.store()
        await anyio.to_thread.run_sync(store.touch_tree, tree, size, time.time())
        if self.cache_max_bytes is not None:
            await anyio.to_thread.run_sync(prune, self.cache_root, self.cache_max_bytes, store)

    async def _register_upload(
        self, remote: str, local: str | os.PathLike[str] | None, interval: float | None, delete: bool,
        sync_on_error: bool, exclude: Exclude, profile: ProfileArg, settle: float | None, atomic: bool,
    ) -> Path:
        self.engine  # noqa: B018 - raises outside the context
        iv = check_interval(interval)
        target = self._registry.target(remote, local, profile)
        if target.url.trailing_slash and target.explicit_local and await anyio.to_thread.run_sync(
                target.local.is_file):
            # A file sent to a folder URL keeps its name below it, as `aws s3 cp f s3://b/dir/` does.
            url = S3URL(target.url.bucket, target.url.dir_prefix + target.local.name)
            target = Target(url, target.profile, target.local, explicit_local=True)
        excluder = Excluder.of(exclude)
        settle = check_settle(settle)
        params = (target.local, target.profile, iv, bool(delete), bool(sync_on_error), excluder.patterns, settle,
                  bool(atomic))
        existing = self._registry.existing_upload(target, params)
        if existing is not None:
            return existing
        await self._check_bucket(target)
        await anyio.to_thread.run_sync(prepare_upload_path, target)
        # Pinned for this mirror's lifetime: no eviction may remove what the exit upload sends.
        self._pins.append(await anyio.to_thread.run_sync(Pin, self.engine.private, target.local))
        self._registry.uploads[self._registry.key(target)] = UploadReg(
            params, target, iv, bool(delete), bool(sync_on_error), excluder, settle, bool(atomic))
        if iv is not None:
            self._scheduler.ensure_started(self._tg)
        return target.local

    async def _check_bucket(self, target: Target) -> None:
        """Fail an upload registration at once when its bucket does not exist (one HeadBucket).

        Only a 404 fails: a 403 is allowed on (upload-only credentials may not HeadBucket), and
        any other error is left for the upload itself to meet and report.
        """
        seen = (target.profile, target.url.bucket)
        if seen in self._buckets_ok:
            return
        s3 = await self.engine.pool.get(target.profile)
        if await s3.bucket_missing(target.url.bucket):
            raise NotFoundError(f"{target.url}: bucket does not exist (NoSuchBucket); the upload was not registered",
                                url=str(target.url), code="NoSuchBucket")
        self._buckets_ok.add(seen)

    async def _register_sync(
        self, remote: str, local: str | os.PathLike[str] | None, interval: float | None, delete_local: bool,
        delete_remote: bool, sync_on_error: bool, exclude: Exclude, profile: ProfileArg, settle: float | None,
        atomic: bool,
    ) -> Path:
        target = self._registry.target(remote, local, profile)
        same = self._registry.same_upload(target, (
            target.local, target.profile, check_interval(interval), bool(delete_remote), bool(sync_on_error),
            Excluder.of(exclude).patterns, check_settle(settle), bool(atomic),
        ))
        if same is not None:
            return same
        # sync() ends as an upload registration: refuse overlaps before anything moves.
        self._registry.check_new_upload(target)
        # The download of sync() keeps local work (never in sync, or changed since its record)
        # for the upload, and refuses a file changed on both sides: no version is lost.
        path = await self._download(remote, local, delete_local, exclude, profile, allow_empty=True,
                                    keep_local=True)
        self._registry.downloads.pop(self._registry.key(target), None)
        return await self._register_upload(remote, path, interval, delete_remote, sync_on_error, exclude, profile,
                                           settle, atomic)
