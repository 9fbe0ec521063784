"""The lifetime of a mirror: its engine and task group, the exit rules, and registering transfers.

`MirrorCore` is the base of `AsyncMirror`: it owns the `Engine` (clients, limits, state store),
the `Registry` of downloads and uploads, the `UploadScheduler`, and the cache pins. The public
class adds only the documented methods, which forward here.
"""

from __future__ import annotations

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
from ._concurrency import connection_pool_size
from ._engine import Engine, EngineOptions
from ._exclude import Excluder
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
from ._s3 import ClientOptions
from ._shard import check_shard

__all__ = ["MirrorCore", "cache_limit", "engine_options"]

log = logging.getLogger("pos3")


def engine_options(
    max_workers: int | None, max_upload_bytes_per_second: float | None, lock_timeout: float, connect_timeout: float,
    read_timeout: float, retry_mode: str, max_attempts: int,
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
    return EngineOptions(
        max_workers=max_workers,
        max_upload_bytes_per_second=max_upload_bytes_per_second,
        lock_timeout=lock_timeout,
        clients=ClientOptions(
            max_pool_connections=connection_pool_size(max_workers),
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retry_mode=retry_mode,
            max_attempts=max_attempts,
        ),
    )


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
        self._progress = Progress(show_progress)
        self._engine: Engine | None = None
        self._stack: AsyncExitStack | None = None
        self._registry = Registry(self.cache_root, self.default_profile)
        self._scheduler = UploadScheduler(self._registry.uploads, lambda: self.engine)

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        if self._stack is not None:
            raise RuntimeError("this AsyncMirror is already open")
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
            self._tg.cancel_scope.cancel()
            try:
                for pin in self._pins:
                    pin.release()
                self._pins.clear()
                if self._engine is not None:
                    await self._engine.aclose()
                    self._engine = None
            finally:
                await stack.__aexit__(None, None, None)

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise RuntimeError("use the mirror inside 'async with pos3.amirror() as m:'")
        return self._engine

    # ------------------------------------------------------------------ internals

    async def _download(
        self, remote: str | os.PathLike[str], local: str | os.PathLike[str] | None, delete: bool,
        exclude: Exclude, profile: ProfileArg, *, allow_empty: bool, shard: tuple[int, int] | None = None,
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
            size = await engine.download(target, delete=bool(delete), exclude=excluder, allow_empty=allow_empty,
                                         shard=shard)
            if not target.explicit_local and not allow_empty:
                await self._track(target.local, size)

        return await self._registry.download(target, params, fetch)

    async def _track(self, tree: Path, size: int) -> None:
        """Pin a downloaded cache tree for this mirror's lifetime; evict others past the limit."""
        engine = self.engine
        store = await engine.store()
        self._pins.append(await anyio.to_thread.run_sync(Pin, engine.private, tree))
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
        excluder = Excluder.of(exclude)
        settle = check_settle(settle)
        params = (target.local, target.profile, iv, bool(delete), bool(sync_on_error), excluder.patterns, settle,
                  bool(atomic))
        existing = self._registry.existing_upload(target, params)
        if existing is not None:
            return existing
        await anyio.to_thread.run_sync(prepare_upload_path, target)
        # Pinned for this mirror's lifetime: no eviction may remove what the exit upload sends.
        self._pins.append(await anyio.to_thread.run_sync(Pin, self.engine.private, target.local))
        self._registry.uploads[self._registry.key(target)] = UploadReg(
            params, target, iv, bool(delete), bool(sync_on_error), excluder, settle, bool(atomic))
        if iv is not None:
            self._scheduler.ensure_started(self._tg)
        return target.local

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
        path = await self._download(remote, local, delete_local, exclude, profile, allow_empty=True)
        self._registry.downloads.pop(self._registry.key(target), None)
        return await self._register_upload(remote, path, interval, delete_remote, sync_on_error, exclude, profile,
                                           settle, atomic)
