"""`mirror()` for blocking code: the async core on one dedicated event-loop thread.

Nothing here decides anything: each module function forwards one call to the `AsyncMirror`
running on the mirror's loop thread and waits for it. The active mirror is process-global
(threads do not inherit context variables), guarded by a lock, and owned by the process that
opened it: in a forked child, calls raise `NoMirrorError` instead of waiting forever on a loop
thread that does not exist there, and leaving the block does nothing (the parent's mirror does
the exit's work when the parent leaves its block).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import os
import threading
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, overload

import anyio
from anyio.from_thread import BlockingPortal

from ._docstrings import forward_doc
from ._errors import NoMirrorError
from ._mirror import AsyncMirror, ProfileArg
from ._plan import TransferPlan

__all__ = [
    "download",
    "ls",
    "mirror",
    "plan_download",
    "plan_upload",
    "request_upload",
    "sync",
    "upload",
    "with_mirror",
]

T = TypeVar("T")
P = ParamSpec("P")

_lock = threading.Lock()
_active: SyncMirror | None = None
_forked_from: int | None = None
_CANCEL_WAIT = 30.0


def _after_fork_in_child() -> None:
    global _active, _forked_from, _lock
    _lock = threading.Lock()
    if _active is not None:
        _forked_from = _active.pid
        _active = None


os.register_at_fork(after_in_child=_after_fork_in_child)


def backend_options() -> dict[str, Any]:
    """anyio's asyncio options: uvloop when it is installed (``pip install pos3[fast]``)."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return {}
    return {"use_uvloop": True}


class _LoopThread:
    """An event loop on its own thread, serving a `BlockingPortal` until `close`.

    Like anyio's ``start_blocking_portal``, but a plain object rather than a generator-based
    context manager: nothing runs when it is dropped or garbage-collected, so a forked child can
    forget it without touching the parent's loop thread (which does not exist in the child).
    """

    def __init__(self) -> None:
        ready: concurrent.futures.Future[BlockingPortal] = concurrent.futures.Future()

        async def serve() -> None:
            async with BlockingPortal() as portal:
                ready.set_result(portal)
                await portal.sleep_until_stopped()

        def main() -> None:
            try:
                anyio.run(serve, backend="asyncio", backend_options=backend_options())
            except BaseException as exc:
                if not ready.done():
                    ready.set_exception(exc)
                else:
                    raise

        self._thread = threading.Thread(target=main, name="pos3-loop", daemon=True)
        self._thread.start()
        self.portal = ready.result()

    def close(self, cancel_remaining: bool) -> None:
        """Stop the portal (cancelling tasks still running when ``cancel_remaining``), join the thread."""
        with contextlib.suppress(RuntimeError):  # stopped already
            self.portal.call(self.portal.stop, cancel_remaining)
        self._thread.join()


class SyncMirror(AbstractContextManager["SyncMirror"]):
    """The context manager returned by `mirror()`; forwards calls to an `AsyncMirror`.

    Attributes:
        pid: The process that opened the mirror; calls from a forked child raise `NoMirrorError`.
    """

    def __init__(self, **kwargs: Any) -> None:
        self._kwargs = kwargs
        self._loop: _LoopThread | None = None
        self._portal: BlockingPortal | None = None
        self._core: AsyncMirror | None = None
        self._core_cm: AbstractContextManager[AsyncMirror] | None = None
        self.pid = os.getpid()

    @property
    def cache_root(self) -> Path:
        """The resolved cache root of this mirror."""
        assert self._core is not None
        return self._core.cache_root

    def __enter__(self) -> SyncMirror:
        global _active
        core = AsyncMirror(**self._kwargs)  # validates arguments before anything starts
        with _lock:
            if _active is not None:
                raise NoMirrorError(
                    "Mirror already active: pos3.mirror() is open in this process; nested mirrors are not allowed"
                )
            _active = self
        try:
            self._loop = _LoopThread()
            self._portal = self._loop.portal
            self._core = core
            self._core_cm = self._portal.wrap_async_context_manager(core)
            self._core_cm.__enter__()
        except BaseException as exc:
            self._shutdown(type(exc), exc, exc.__traceback__)
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._shutdown(exc_type, exc, tb)

    def _shutdown(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        global _active
        if os.getpid() != self.pid:
            # A forked child: the loop thread, the clients and the registrations are the
            # parent's; it runs the exit uploads when it leaves its own block. Forget them.
            self._core_cm, self._loop, self._portal, self._core = None, None, None, None
            return
        try:
            if self._core_cm is not None:
                core_cm, self._core_cm = self._core_cm, None
                core_cm.__exit__(exc_type, exc, tb)
        except BaseException:
            if self._loop is not None:
                loop, self._loop = self._loop, None
                loop.close(cancel_remaining=True)
            raise
        finally:
            try:
                if self._loop is not None:
                    loop, self._loop = self._loop, None
                    loop.close(cancel_remaining=exc_type is not None)
            finally:
                self._portal = None
                with _lock:
                    if _active is self:
                        _active = None

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(core, *args, **kwargs)`` on the mirror's loop and wait for its result.

        On an interrupt (Ctrl-C) the call is cancelled and its cleanup (partial files) is
        awaited, for a bounded time, before the interrupt propagates.

        Args:
            fn: A coroutine function taking the `AsyncMirror` first.
            *args: Passed to ``fn`` after the mirror.
            **kwargs: Passed to ``fn``.

        Returns:
            What ``fn`` returned.

        Raises:
            NoMirrorError: The mirror is closed, or belongs to the parent of a forked process.
        """
        if os.getpid() != self.pid:
            raise NoMirrorError("this pos3 mirror belongs to the parent process; open a new pos3.mirror() here")
        portal, core = self._portal, self._core
        if portal is None or core is None:
            raise NoMirrorError("this pos3 mirror is closed")
        finished = threading.Event()

        async def run() -> T:
            try:
                return await fn(core, *args, **kwargs)
            finally:
                finished.set()

        future = portal.start_task_soon(run)
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            raise
        except BaseException:
            if not future.done():
                future.cancel()
                if future.running() or not future.cancelled():
                    finished.wait(_CANCEL_WAIT)
                else:
                    finished.wait(min(_CANCEL_WAIT, 1.0))
            raise


@forward_doc(AsyncMirror, only_args=True)
def mirror(
    cache_root: str | os.PathLike[str] | None = None,
    show_progress: bool = True,
    max_workers: int | None = None,
    default_profile: ProfileArg = None,
    max_upload_bytes_per_second: float | None = None,
    *,
    cache_max_bytes: int | None = None,
    lock_timeout: float = 600.0,
    connect_timeout: float = 10.0,
    read_timeout: float = 60.0,
    retry_mode: str = "standard",
    max_attempts: int = 5,
    stall_timeout: float = 15.0,
    outage_budget: float = 60.0,
    ca_bundle: str | os.PathLike[str] | None = None,
    verify: bool = True,
) -> SyncMirror:
    """Mirror S3 onto local disk for blocking code: ``with pos3.mirror():``.

    Inside the block, `download`, `upload`, `sync`, `ls`, `plan_download` and `plan_upload`
    work and return plain local paths. Leaving the block uploads every registered upload;
    when the block raises, only uploads with ``sync_on_error=True``; on Ctrl-C, none.

    The arguments are those of [`AsyncMirror`][pos3.AsyncMirror] (documented there once),
    with the same names and defaults: ``cache_root``, ``show_progress``, ``max_workers``,
    ``default_profile``, ``max_upload_bytes_per_second``, and the keyword-only
    ``cache_max_bytes``, ``lock_timeout``, ``connect_timeout``, ``read_timeout``,
    ``retry_mode``, ``max_attempts``, ``stall_timeout``, ``outage_budget``, ``ca_bundle`` and
    ``verify``.

    Returns:
        A context manager; ``with pos3.mirror() as m`` gives the `SyncMirror`.

    Raises:
        ValueError: An argument is out of range.
        NoMirrorError: A mirror is already active in this process (a `RuntimeError`).
        TransferError: The upload on exit failed.
    """
    return SyncMirror(cache_root=cache_root, show_progress=show_progress, max_workers=max_workers,
                      default_profile=default_profile, max_upload_bytes_per_second=max_upload_bytes_per_second,
                      cache_max_bytes=cache_max_bytes, lock_timeout=lock_timeout, connect_timeout=connect_timeout,
                      read_timeout=read_timeout, retry_mode=retry_mode, max_attempts=max_attempts,
                      stall_timeout=stall_timeout, outage_budget=outage_budget, ca_bundle=ca_bundle, verify=verify)


@overload
def with_mirror(func: Callable[P, T], /) -> Callable[P, T]: ...
@overload
def with_mirror(
    cache_root: str | os.PathLike[str] | None = None,
    show_progress: bool = True,
    max_workers: int | None = None,
    default_profile: ProfileArg = None,
    max_upload_bytes_per_second: float | None = None,
    *,
    cache_max_bytes: int | None = None,
    lock_timeout: float = 600.0,
    connect_timeout: float = 10.0,
    read_timeout: float = 60.0,
    retry_mode: str = "standard",
    max_attempts: int = 5,
    stall_timeout: float = 15.0,
    outage_budget: float = 60.0,
    ca_bundle: str | os.PathLike[str] | None = None,
    verify: bool = True,
) -> Callable[[Callable[P, T]], Callable[P, T]]: ...


def with_mirror(*args: Any, **kwargs: Any) -> Any:
    """Decorator form of `mirror()`: the function runs inside a fresh mirror at each call.

    Use ``@pos3.with_mirror`` or ``@pos3.with_mirror(cache_root=..., ...)``; the arguments
    are those of `mirror()`.

    Args:
        *args: The decorated function (bare ``@pos3.with_mirror``), or `mirror()` arguments.
        **kwargs: `mirror()` arguments.

    Returns:
        The wrapped function, or a decorator that wraps one.
    """
    if len(args) == 1 and callable(args[0]) and not kwargs:
        return with_mirror()(args[0])

    def decorate(func: Callable[P, T]) -> Callable[P, T]:
        @functools.wraps(func)
        def wrapper(*a: P.args, **kw: P.kwargs) -> T:
            with mirror(*args, **kwargs):
                return func(*a, **kw)

        return wrapper

    return decorate


def _current() -> SyncMirror:
    with _lock:
        active = _active
    if active is None:
        if _forked_from is not None and os.getpid() != _forked_from:
            raise NoMirrorError(
                f"pos3.mirror() was opened in the parent process (pid {_forked_from}); paths it returned stay "
                "valid here, but to transfer from this process open a new pos3.mirror() in it"
            )
        raise NoMirrorError("No active mirror: call this inside 'with pos3.mirror():' (or use pos3.amirror())")
    return active


Exclude = str | Sequence[str] | None


@forward_doc(AsyncMirror.download)
def download(
    remote: str | os.PathLike[str],
    local: str | os.PathLike[str] | None = None,
    delete: bool = True,
    exclude: Exclude = None,
    profile: ProfileArg = None,
    *,
    shard: tuple[int, int] | None = None,
) -> Path:
    """Mirror an S3 prefix or object onto local disk now; return the local path.

    The blocking form of [`AsyncMirror.download`][pos3.AsyncMirror.download]: the same
    arguments, return value and errors (documented there once). Needs an active `mirror()`;
    raises `NoMirrorError` outside one.
    """
    return _current().call(AsyncMirror.download, remote, local, delete, exclude, profile, shard=shard)


@forward_doc(AsyncMirror.upload)
def upload(
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
    """Register a local path uploaded on exit and every ``interval`` seconds; return it.

    The blocking form of [`AsyncMirror.upload`][pos3.AsyncMirror.upload]: the same arguments,
    return value and errors (documented there once). Needs an active `mirror()`; raises
    `NoMirrorError` outside one.
    """
    return _current().call(
        AsyncMirror.upload, remote, local, interval, delete, sync_on_error, exclude, profile, settle=settle,
        atomic=atomic,
    )


@forward_doc(AsyncMirror.sync)
def sync(
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
    """Download now, then register the same path for upload; return it.

    The blocking form of [`AsyncMirror.sync`][pos3.AsyncMirror.sync]: the same arguments,
    return value and errors (documented there once). Needs an active `mirror()`; raises
    `NoMirrorError` outside one.
    """
    return _current().call(
        AsyncMirror.sync, remote, local, interval, delete_local, delete_remote, sync_on_error, exclude, profile,
        settle=settle, atomic=atomic,
    )


@forward_doc(AsyncMirror.ls)
def ls(prefix: str | os.PathLike[str], recursive: bool = False, profile: ProfileArg = None) -> list[str]:
    """List an S3 prefix (``s3://`` URLs) or a local folder (paths), sorted.

    The blocking form of [`AsyncMirror.ls`][pos3.AsyncMirror.ls]: the same arguments, return
    value and errors (documented there once). Needs an active `mirror()`; raises
    `NoMirrorError` outside one.
    """
    return _current().call(AsyncMirror.ls, prefix, recursive, profile)


@forward_doc(AsyncMirror.plan_download)
def plan_download(
    remote: str,
    local: str | os.PathLike[str] | None = None,
    delete: bool = True,
    exclude: Exclude = None,
    profile: ProfileArg = None,
    *,
    shard: tuple[int, int] | None = None,
    keep_local: bool = False,
) -> TransferPlan:
    """What `download` would do, with no side effects (nothing is written or registered).

    The blocking form of [`AsyncMirror.plan_download`][pos3.AsyncMirror.plan_download]: the
    same arguments, return value and errors (documented there once). Needs an active
    `mirror()`; raises `NoMirrorError` outside one.
    """
    return _current().call(AsyncMirror.plan_download, remote, local, delete, exclude, profile, shard=shard,
                           keep_local=keep_local)


@forward_doc(AsyncMirror.plan_upload)
def plan_upload(
    remote: str,
    local: str | os.PathLike[str] | None = None,
    delete: bool = True,
    exclude: Exclude = None,
    profile: ProfileArg = None,
) -> TransferPlan:
    """What one upload would do, with no side effects.

    The blocking form of [`AsyncMirror.plan_upload`][pos3.AsyncMirror.plan_upload]: the same
    arguments, return value and errors (documented there once). Needs an active `mirror()`;
    raises `NoMirrorError` outside one.
    """
    return _current().call(AsyncMirror.plan_upload, remote, local, delete, exclude, profile)


def request_upload() -> None:
    """Start a background upload of every registration within a second; return at once.

    Failures of that upload are logged and retried at the next interval.

    Raises:
        NoMirrorError: No `mirror()` is active.
    """

    async def _request(core: AsyncMirror) -> None:
        core.request_upload()

    _current().call(_request)
