"""`AsyncMirror` / `amirror()`: registrations, background uploads and the rules of exit."""

from __future__ import annotations

import dataclasses
import datetime
import logging
import math
import os
import re
import stat
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import anyio

from ._cache import Pin, prune
from ._engine import Engine, EngineOptions, ListEntry, Target
from ._errors import Failure, InvalidURLError, Pos3Error, RegistrationError, TransferError
from ._exclude import Excluder
from ._plan import TransferPlan
from ._profiles import DEFAULT_LOCAL_NAME, Profile, resolve_profile
from ._progress import Progress
from ._s3 import ClientOptions
from ._shard import check_shard
from ._urls import S3URL, is_url_like, overlaps, parse_s3_url

__all__ = ["AsyncMirror", "amirror", "default_cache_root"]

log = logging.getLogger("pos3")

ProfileArg = str | Profile | None
Exclude = str | Sequence[str] | None


def default_cache_root() -> Path:
    """``$POS3_CACHE_ROOT``, else ``~/.cache/pos3``."""
    return Path(os.environ.get("POS3_CACHE_ROOT") or "~/.cache/pos3").expanduser()


@dataclass
class _Download:
    params: tuple[object, ...]
    local: Path
    done: anyio.Event = field(default_factory=anyio.Event)
    error: BaseException | None = None


@dataclass
class _Upload:
    params: tuple[object, ...]
    target: Target
    interval: float | None
    delete: bool
    sync_on_error: bool
    exclude: Excluder
    settle: float | None = None
    atomic: bool = False
    last_sync: float = field(default_factory=time.monotonic)


# "model.pt", "pred.csv", "data.tar.gz" name files; "v1.2", "lr-0.001", "2024.01.05" name folders.
_FILE_SUFFIX = re.compile(r"[^.]\.[A-Za-z][A-Za-z0-9]{0,9}$")


def _check_settle(settle: float | None) -> float | None:
    if settle is None or settle == 0:
        return None
    if isinstance(settle, bool) or not isinstance(settle, int | float) or not math.isfinite(settle) or settle < 0:
        raise ValueError(f"settle must be a non-negative number of seconds or None, not {settle!r}")
    return float(settle)


def _check_interval(interval: float | None) -> float | None:
    if interval is None:
        return None
    if isinstance(interval, bool) or not isinstance(interval, int | float) or not math.isfinite(interval) \
            or interval <= 0:
        raise ValueError(f"interval must be a positive number of seconds or None, not {interval!r}")
    return float(interval)


class AsyncMirror:
    """Mirror S3 prefixes onto local disk from asyncio code.

    Use it as ``async with pos3.amirror() as m:``; every method is awaitable and runs on the
    caller's event loop. Leaving the block uploads every registered upload (only those with
    ``sync_on_error=True`` when the block raised; none on cancellation or Ctrl-C).

    Args:
        cache_root: Where mirrors live; ``$POS3_CACHE_ROOT`` or ``~/.cache/pos3`` by default.
        show_progress: Progress bars (bytes, rate, ETA) on stderr.
        max_workers: Concurrent requests (one limit for listing, hashing and transfers).
        default_profile: Profile used when a call names none.
        max_upload_bytes_per_second: One total upload rate for every worker; ``None``: no limit.
        lock_timeout: Seconds to wait for another process (or mirror) holding a local folder.
        connect_timeout: Seconds to open a connection.
        read_timeout: Seconds without a byte before a read fails.
        retry_mode: botocore retry mode, ``"standard"`` or ``"adaptive"``.
        max_attempts: Total attempts per request, the first one included.

    Raises:
        ValueError: An argument is out of range (``max_workers`` below 1, a rate that is not
            positive, an unknown ``retry_mode``).
        ProfileError: ``default_profile`` names an unknown profile.
    """

    def __init__(
        self,
        cache_root: str | os.PathLike[str] | None = None,
        show_progress: bool = True,
        max_workers: int = 10,
        default_profile: ProfileArg = None,
        max_upload_bytes_per_second: float | None = None,
        *,
        cache_max_bytes: int | None = None,
        lock_timeout: float = 600.0,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        retry_mode: str = "standard",
        max_attempts: int = 5,
    ) -> None:
        if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
            raise ValueError(f"max_workers must be a positive integer, not {max_workers!r}")
        if max_upload_bytes_per_second is not None and not max_upload_bytes_per_second > 0:
            raise ValueError(
                f"max_upload_bytes_per_second must be positive or None, not {max_upload_bytes_per_second!r}"
            )
        if retry_mode not in ("standard", "adaptive", "legacy"):
            raise ValueError(f"retry_mode must be 'standard' or 'adaptive', not {retry_mode!r}")
        root = Path(cache_root).expanduser() if cache_root is not None else default_cache_root()
        self.cache_root = root.resolve()
        if cache_max_bytes is None and os.environ.get("POS3_CACHE_MAX_BYTES"):
            try:
                cache_max_bytes = int(os.environ["POS3_CACHE_MAX_BYTES"])
            except ValueError:
                raise ValueError(
                    f"POS3_CACHE_MAX_BYTES={os.environ['POS3_CACHE_MAX_BYTES']!r} is not a whole number of bytes"
                ) from None
        if cache_max_bytes is not None and (isinstance(cache_max_bytes, bool) or cache_max_bytes < 0):
            raise ValueError(f"cache_max_bytes must be a non-negative number of bytes, not {cache_max_bytes!r}")
        self.cache_max_bytes = cache_max_bytes
        self._pins: list[Pin] = []
        self.default_profile = resolve_profile(default_profile)
        self._options = EngineOptions(
            max_workers=max_workers,
            max_upload_bytes_per_second=max_upload_bytes_per_second,
            lock_timeout=lock_timeout,
            clients=ClientOptions(
                max_pool_connections=max(max_workers * 2, 10),
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                retry_mode=retry_mode,
                max_attempts=max_attempts,
            ),
        )
        self._progress = Progress(show_progress)
        self._engine: Engine | None = None
        self._stack: AsyncExitStack | None = None
        self._downloads: dict[tuple[str, str, str], _Download] = {}
        self._uploads: dict[tuple[str, str, str], _Upload] = {}
        self._upload_lock = anyio.Lock()
        self._wake = anyio.Event()
        self._requested = False
        self._background_started = False
        self._background_scope: anyio.CancelScope | None = None
        self._closing = False

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> AsyncMirror:
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
        self._closing = True
        try:
            if self._background_scope is not None:
                self._background_scope.cancel()
            clean = exc_type is None or (isinstance(exc, SystemExit) and exc.code in (None, 0))
            if clean:
                todo = list(self._uploads.values())
            elif isinstance(exc, Exception | SystemExit):
                todo = [u for u in self._uploads.values() if u.sync_on_error]
            else:  # KeyboardInterrupt, cancellation: never upload, never delete remotely.
                todo = []
            if todo:
                try:
                    await self._sync_uploads(todo)
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

    # ------------------------------------------------------------------ resolution

    def _target(self, remote: str, local: str | os.PathLike[str] | None, profile: ProfileArg) -> Target:
        url = parse_s3_url(remote)
        # The URL's selector wins over profile=, which wins over default_profile; "_" names the
        # default chain explicitly (resolve_profile gives None for it), so it is not replaced.
        selector = url.profile if url.profile is not None else profile
        resolved = self.default_profile if selector is None else resolve_profile(selector)
        if url.profile is not None:
            url = S3URL(url.bucket, url.key, None, url.trailing_slash)
        if local is None:
            name = resolved.local_name if resolved is not None else DEFAULT_LOCAL_NAME
            path = self.cache_root / name / url.bucket
            if url.stem:
                path = path.joinpath(*url.stem.split("/"))
            return Target(url, resolved, path, explicit_local=False)
        return Target(url, resolved, Path(local).expanduser().resolve(), explicit_local=True)

    @staticmethod
    def _is_local(remote: str | os.PathLike[str]) -> bool:
        if isinstance(remote, os.PathLike):
            return True
        if not isinstance(remote, str):
            raise TypeError(f"remote must be a str or a path, not {type(remote).__name__}")
        if not remote:
            raise InvalidURLError("remote is empty; expected s3://bucket/key or a local path")
        if is_url_like(remote):
            parse_s3_url(remote)  # raises for http://, s3:/x...
            return False
        return True

    @staticmethod
    def _key(target: Target) -> tuple[str, str, str]:
        """Registrations are told apart by bucket, key and cache folder (the profile's local name):
        two profiles sharing a folder would otherwise write one tree unnoticed."""
        folder = target.profile.local_name if target.profile is not None else DEFAULT_LOCAL_NAME
        return (target.url.bucket, target.url.stem, folder)

    def _conflicts(self, target: Target, table: dict[tuple[str, str, str], object], what: str,
                   skip_same: bool = False) -> None:
        bucket, stem, profile = self._key(target)
        for (b, s, p) in table:
            if b == bucket and p == profile and overlaps(s, stem) and not (skip_same and s == stem):
                raise RegistrationError(f"Conflict: s3://{bucket}/{stem} overlaps the {what} of s3://{b}/{s}")

    # ------------------------------------------------------------------ public API

    async def download(
        self,
        remote: str | os.PathLike[str],
        local: str | os.PathLike[str] | None = None,
        delete: bool = True,
        exclude: Exclude = None,
        profile: ProfileArg = None,
        *,
        shard: tuple[int, int] | None = None,
    ) -> Path:
        """Mirror an S3 prefix or object onto local disk now; return the local path.

        Only what changed is transferred. Repeating the same call returns the same path at once.

        Args:
            remote: ``s3://[profile@]bucket/key`` URL, or a local path (returned unchanged).
            local: Local destination; defaults to ``<cache_root>/<profile>/bucket/key``.
            delete: Delete local files that are absent in S3 (mirror semantics).
            exclude: Glob patterns (``*``, ``**``, ``?``, ``[...]``) skipped on both sides.
            profile: Profile name or `Profile`; a profile in the URL wins.
            shard: ``(rank, world_size)``: fetch only this rank's deterministic, byte-balanced
                share of the files, so the nodes of a distributed job split a dataset without
                coordination. ``None`` (default): the whole prefix.

        Returns:
            The local folder (or file, when ``remote`` names one object).

        Raises:
            InvalidURLError: ``remote`` is a malformed URL.
            NotFoundError: The bucket does not exist or the prefix holds no object.
            AccessDeniedError: The credentials may not read it.
            RegistrationError: It overlaps an upload, or repeats a download with other arguments.
            UnsafeKeyError: A key would be written outside the folder, or two keys collide.
            TransferError: Some objects failed; the others were placed.
        """
        return await self._download(remote, local, delete, exclude, profile, allow_empty=False, shard=shard)

    async def _download(
        self, remote: str | os.PathLike[str], local: str | os.PathLike[str] | None, delete: bool,
        exclude: Exclude, profile: ProfileArg, *, allow_empty: bool, shard: tuple[int, int] | None = None,
    ) -> Path:
        if self._is_local(remote):
            return Path(remote).expanduser().resolve()
        assert isinstance(remote, str)
        engine = self.engine
        target = self._target(remote, local, profile)
        excluder = Excluder.of(exclude)
        shard = check_shard(shard)
        params = (target.local, target.profile, bool(delete), excluder.patterns, allow_empty, shard)
        key = self._key(target)
        existing = self._downloads.get(key)
        if existing is not None:
            if existing.params != params:
                raise RegistrationError(
                    f"{target.url}: download already registered with different parameters in this mirror"
                )
            await existing.done.wait()
            if existing.error is not None:
                raise existing.error
            return existing.local
        self._conflicts(target, self._uploads, "upload")  # type: ignore[arg-type]
        reg = self._downloads[key] = _Download(params, target.local)
        try:
            size = await engine.download(target, delete=bool(delete), exclude=excluder, allow_empty=allow_empty,
                                         shard=shard)
            if not target.explicit_local and not allow_empty:
                await self._track(target.local, size)
        except BaseException as exc:
            reg.error = exc
            del self._downloads[key]
            raise
        finally:
            reg.done.set()
        return target.local

    async def _track(self, tree: Path, size: int) -> None:
        """Pin a downloaded cache tree for this mirror's lifetime; evict others past the limit."""
        engine = self.engine
        store = await engine.store()
        self._pins.append(await anyio.to_thread.run_sync(Pin, engine.private, tree))
        await anyio.to_thread.run_sync(store.touch_tree, tree, size, time.time())
        if self.cache_max_bytes is not None:
            await anyio.to_thread.run_sync(prune, self.cache_root, self.cache_max_bytes, store)

    async def upload(
        self,
        remote: str | os.PathLike[str],
        local: str | os.PathLike[str] | None = None,
        interval: float | None = 300,
        delete: bool = True,
        sync_on_error: bool = False,
        exclude: Exclude = None,
        profile: ProfileArg = None,
        *,
        settle: float | None = 1.0,
        atomic: bool = False,
    ) -> Path:
        """Register a local folder (or file) that is uploaded on exit and every ``interval`` seconds.

        Args:
            remote: Destination ``s3://`` URL, or a local path (created and returned).
            local: Local source; defaults to the cache path of ``remote``.
            interval: Seconds between background uploads; ``None`` uploads only on exit.
            delete: Delete objects that are absent locally.
            sync_on_error: Upload on exit even when the block raised.
            exclude: Glob patterns skipped on both sides.
            profile: Profile name or `Profile`; a profile in the URL wins.
            settle: A periodic upload sends a file only once it has not changed for this many
                seconds, so a checkpoint still being written is never uploaded half-done; the
                upload on exit sends everything. ``None`` or 0: no waiting.
            atomic: Publish the folder as one snapshot (objects first, a commit written last):
                a `download` of the prefix elsewhere sees the previous snapshot or the new one,
                never half of it. The objects are stored by content below ``<prefix>/.pos3/``;
                read them back with pos3's `download`.

        Returns:
            The local path to write to (a folder is created; a name with a suffix such as
            ``model.pt`` is treated as a file and only its parent is created).

        Raises:
            InvalidURLError: ``remote`` is a malformed URL.
            ValueError: ``interval`` or ``settle`` is not a valid number of seconds.
            RegistrationError: It overlaps a download or another upload, or repeats one with
                other arguments.
        """
        if self._is_local(remote):
            path = Path(remote).expanduser().resolve()
            await anyio.to_thread.run_sync(lambda: path.mkdir(parents=True, exist_ok=True))
            return path
        assert isinstance(remote, str)
        self.engine  # noqa: B018 - raises outside the context
        iv = _check_interval(interval)
        target = self._target(remote, local, profile)
        excluder = Excluder.of(exclude)
        settle = _check_settle(settle)
        params = (target.local, target.profile, iv, bool(delete), bool(sync_on_error), excluder.patterns, settle,
                  bool(atomic))
        key = self._key(target)
        existing = self._uploads.get(key)
        if existing is not None:
            if existing.params != params:
                raise RegistrationError(
                    f"{target.url}: upload already registered with different parameters in this mirror"
                )
            return existing.target.local
        self._conflicts(target, self._downloads, "download")  # type: ignore[arg-type]
        self._conflicts(target, self._uploads, "upload")  # type: ignore[arg-type]
        await anyio.to_thread.run_sync(self._prepare_upload_path, target)
        # Pinned for this mirror's lifetime: no eviction may remove what the exit upload sends.
        self._pins.append(await anyio.to_thread.run_sync(Pin, self.engine.private, target.local))
        self._uploads[key] = _Upload(params, target, iv, bool(delete), bool(sync_on_error), excluder, settle,
                                     bool(atomic))
        if iv is not None:
            self._ensure_background()
        return target.local

    @staticmethod
    def _prepare_upload_path(target: Target) -> None:
        path = target.local
        if path.exists():
            return
        named_like_file = bool(_FILE_SUFFIX.search(path.name))
        named_like_file = bool(_FILE_SUFFIX.search(path.name))
        looks_like_file = bool(target.url.stem) and not target.url.trailing_slash and named_like_file
        (path.parent if looks_like_file else path).mkdir(parents=True, exist_ok=True)

    async def sync(
        self,
        remote: str | os.PathLike[str],
        local: str | os.PathLike[str] | None = None,
        interval: float | None = 300,
        delete_local: bool = True,
        delete_remote: bool = True,
        sync_on_error: bool = False,
        exclude: Exclude = None,
        profile: ProfileArg = None,
        *,
        settle: float | None = 1.0,
        atomic: bool = False,
    ) -> Path:
        """Download now, then register the same path for upload (resume-and-save jobs).

        An empty prefix is fine here (a job's first run): the local folder is created.

        Args:
            remote: ``s3://`` URL, or a local path (returned unchanged).
            local: Local path; defaults to the cache path of ``remote``.
            interval: Seconds between background uploads; ``None`` uploads only on exit.
            delete_local: Delete local files absent in S3 during the download.
            delete_remote: Delete objects absent locally during uploads.
            sync_on_error: Upload on exit even when the block raised.
            exclude: Glob patterns skipped on both sides.
            profile: Profile name or `Profile`; a profile in the URL wins.
            settle: See `upload`.
            atomic: See `upload`.

        Returns:
            The local path.

        Raises:
            InvalidURLError: ``remote`` is a malformed URL.
            NotFoundError: The bucket does not exist.
            AccessDeniedError: The credentials may not read it.
            RegistrationError: It overlaps another download or upload.
            UnsafeKeyError: A key would be written outside the folder, or two keys collide.
            TransferError: Some objects failed to download.
        """
        if self._is_local(remote):
            return Path(remote).expanduser().resolve()
        assert isinstance(remote, str)
        target = self._target(remote, local, profile)
        key = self._key(target)
        existing = self._uploads.get(key)
        if existing is not None and existing.params == (
            target.local, target.profile, _check_interval(interval), bool(delete_remote), bool(sync_on_error),
            Excluder.of(exclude).patterns, _check_settle(settle), bool(atomic),
        ):
            return existing.target.local
        # sync() ends as an upload registration: refuse overlaps before anything moves.
        self._conflicts(target, self._downloads, "download")  # type: ignore[arg-type]
        self._conflicts(target, self._uploads, "upload")  # type: ignore[arg-type]
        path = await self._download(remote, local, delete_local, exclude, profile, allow_empty=True)
        self._downloads.pop(key, None)
        return await self.upload(remote, path, interval, delete_remote, sync_on_error, exclude, profile,
                                 settle=settle, atomic=atomic)

    async def ls(self, prefix: str | os.PathLike[str], recursive: bool = False, profile: ProfileArg = None
                 ) -> list[str]:
        """List an S3 prefix (full ``s3://`` URLs) or a local folder (paths), sorted.

        Args:
            prefix: ``s3://`` URL or local path.
            recursive: Include everything below, not only the first level.
            profile: Profile name or `Profile`; a profile in the URL wins.

        Returns:
            Files and folders, folders without a trailing slash.

        Raises:
            InvalidURLError: ``prefix`` is a malformed URL.
            NotFoundError: The bucket does not exist (a missing local folder lists as ``[]``).
            AccessDeniedError: The credentials may not list it.
        """
        if self._is_local(prefix):
            return await anyio.to_thread.run_sync(_ls_local, Path(prefix).expanduser(), recursive)
        return [e.name for e in await self.ls_entries(prefix, recursive, profile)]

    async def ls_entries(self, prefix: str | os.PathLike[str], recursive: bool = False, profile: ProfileArg = None
                         ) -> list[ListEntry]:
        """Like `ls`, with each file's size and last-modified time (for ``pos3 ls --long``).

        Args:
            prefix: ``s3://`` URL or local path.
            recursive: Include everything below, not only the first level.
            profile: Profile name or `Profile`; a profile in the URL wins.

        Returns:
            The names `ls` returns, in the same order, as `ListEntry` values.
        """
        if self._is_local(prefix):
            return await anyio.to_thread.run_sync(_ls_local_entries, Path(prefix).expanduser(), recursive)
        assert isinstance(prefix, str)
        target = self._target(prefix, None, profile)
        entries = await self.engine.ls_entries(target.url, target.profile, recursive)
        return [dataclasses.replace(e, name=_with_selector(e.name, prefix)) for e in entries]

    def local_path(self, remote: str, local: str | os.PathLike[str] | None = None, profile: ProfileArg = None
                   ) -> Path:
        """The local path `download` / `upload` of ``remote`` would use; nothing is created.

        Args:
            remote: ``s3://[profile@]bucket/key`` URL.
            local: An explicit local path (returned resolved), or ``None`` for the cache path.
            profile: Profile name or `Profile`; a profile in the URL wins.

        Raises:
            InvalidURLError: ``remote`` is not a well-formed ``s3://`` URL.
        """
        return self._target(remote, local, profile).local

    async def plan_download(
        self,
        remote: str,
        local: str | os.PathLike[str] | None = None,
        delete: bool = True,
        exclude: Exclude = None,
        profile: ProfileArg = None,
        *,
        shard: tuple[int, int] | None = None,
    ) -> TransferPlan:
        """What `download` would do, with no side effects (nothing is written or registered).

        Args:
            remote: ``s3://[profile@]bucket/key`` URL (a local path gives an empty plan).
            local: Local destination; defaults to the cache path.
            delete: Plan deletes of local files that are absent in S3.
            exclude: Glob patterns skipped on both sides.
            profile: Profile name or `Profile`; a profile in the URL wins.
            shard: ``(rank, world_size)``: plan only this rank's share of the files (see
                `download`). ``None`` (default): the whole prefix.

        Returns:
            A `TransferPlan` with ``to_copy``, ``to_delete`` and each action's reason.

        Raises:
            InvalidURLError: ``remote`` is a malformed URL.
            NotFoundError: The bucket does not exist or the prefix holds no object.
            AccessDeniedError: The credentials may not read it.
        """
        if self._is_local(remote):
            return TransferPlan()
        target = self._target(str(remote), local, profile)
        return await self.engine.plan_download(target, delete=bool(delete), exclude=Excluder.of(exclude),
                                               shard=check_shard(shard))

    async def plan_upload(
        self,
        remote: str,
        local: str | os.PathLike[str] | None = None,
        delete: bool = True,
        exclude: Exclude = None,
        profile: ProfileArg = None,
    ) -> TransferPlan:
        """What one upload would do, with no side effects.

        Args:
            remote: Destination ``s3://`` URL (a local path gives an empty plan).
            local: Local source; defaults to the cache path of ``remote``.
            delete: Plan deletes of objects that are absent locally.
            exclude: Glob patterns skipped on both sides.
            profile: Profile name or `Profile`; a profile in the URL wins.

        Returns:
            A `TransferPlan` with ``to_copy``, ``to_delete`` and each action's reason.

        Raises:
            InvalidURLError: ``remote`` is a malformed URL.
            NotFoundError: The bucket does not exist.
            AccessDeniedError: The credentials may not list it.
        """
        if self._is_local(remote):
            return TransferPlan()
        target = self._target(str(remote), local, profile)
        return await self.engine.plan_upload(target, delete=bool(delete), exclude=Excluder.of(exclude))

    def request_upload(self) -> None:
        """Start a background upload of every registration within a second; returns at once."""
        self.engine  # noqa: B018
        self._requested = True
        self._ensure_background()
        self._wake.set()

    async def flush(self) -> None:
        """Upload every registration now and wait for it.

        Raises:
            TransferError: Some objects failed; every other object was uploaded.
        """
        self.engine  # noqa: B018
        await self._sync_uploads(list(self._uploads.values()))

    # ------------------------------------------------------------------ uploads

    async def _sync_uploads(self, uploads: Sequence[_Upload], *, quiescent: bool = False) -> None:
        failures: list[Failure] = []
        engine = self.engine

        async def one(u: _Upload) -> None:
            try:
                run = engine.publish if u.atomic else engine.upload
                await run(u.target, delete=u.delete, exclude=u.exclude, settle=u.settle if quiescent else None)
            except TransferError as exc:
                failures.extend(exc.failures)
            except Pos3Error as exc:
                failures.append(Failure(str(u.target.url), exc))
            except OSError as exc:
                failures.append(Failure(str(u.target.local), exc))
            except Exception as exc:
                failures.append(Failure(str(u.target.url), exc))
            finally:
                u.last_sync = time.monotonic()

        async with self._upload_lock, anyio.create_task_group() as tg:
            for u in uploads:
                tg.start_soon(one, u)
        if failures:
            raise TransferError.of("upload", failures)

    def _ensure_background(self) -> None:
        if not self._background_started and not self._closing:
            self._background_started = True
            self._tg.start_soon(self._background)

    async def _background(self) -> None:
        with anyio.CancelScope() as scope:
            self._background_scope = scope
            while True:
                now = time.monotonic()
                requested, self._requested = self._requested, False
                if requested:
                    due = list(self._uploads.values())
                else:
                    due = [u for u in self._uploads.values()
                           if u.interval is not None and now - u.last_sync >= u.interval]
                if due:
                    try:
                        await self._sync_uploads(due, quiescent=not requested)
                    except Exception as exc:  # the one documented exception: retried next interval
                        log.warning("pos3: background upload failed, retrying at the next interval: %s", exc)
                waits = [u.last_sync + u.interval - time.monotonic() for u in self._uploads.values()
                         if u.interval is not None]
                timeout = min([1.0, *waits]) if waits else 1.0
                with anyio.move_on_after(max(timeout, 0.05)):
                    await self._wake.wait()
                if self._wake.is_set():
                    self._wake = anyio.Event()


def _with_selector(name: str, url: str) -> str:
    """Put the ``profile@`` of ``url`` back on a listed name, so it can be passed on as is."""
    selector = parse_s3_url(url).profile
    return name.replace("s3://", f"s3://{selector}@", 1) if selector else name


def _ls_local(path: Path, recursive: bool) -> list[str]:
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


def _ls_local_entries(path: Path, recursive: bool) -> list[ListEntry]:
    out: list[ListEntry] = []
    for name in _ls_local(path, recursive):
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


def amirror(
    cache_root: str | os.PathLike[str] | None = None,
    show_progress: bool = True,
    max_workers: int = 10,
    default_profile: ProfileArg = None,
    max_upload_bytes_per_second: float | None = None,
    **options: float | str,
) -> AsyncMirror:
    """An async context manager mirroring S3 for asyncio code: ``async with pos3.amirror() as m:``.

    Args:
        cache_root: Where mirrors live; ``$POS3_CACHE_ROOT`` or ``~/.cache/pos3`` by default.
        show_progress: Progress bars (bytes, rate, ETA) on stderr.
        max_workers: Concurrent requests (one limit for listing, hashing and transfers).
        default_profile: Profile used when a call names none.
        max_upload_bytes_per_second: One total upload rate for every worker; ``None``: no limit.
        **options: ``cache_max_bytes`` (evict least recently used downloaded trees past this
            size; ``$POS3_CACHE_MAX_BYTES``), ``lock_timeout``, ``connect_timeout``,
            ``read_timeout``, ``retry_mode``, ``max_attempts`` (see the Guarantees page).

    Returns:
        The `AsyncMirror`; its uploads run when the ``async with`` block ends.

    Raises:
        ValueError: An argument is out of range.
        ProfileError: ``default_profile`` names an unknown profile.
    """
    return AsyncMirror(cache_root, show_progress, max_workers, default_profile, max_upload_bytes_per_second,
                       **options)  # type: ignore[arg-type]
