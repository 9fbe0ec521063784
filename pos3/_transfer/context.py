"""What every transfer job shares: the options, the clients, the limits and the state store."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio

from .. import _policy
from .._clients import ClientOptions, ClientPool
from .._concurrency import MAX_IN_FLIGHT, requests_in_flight
from .._plan import Copy, LocalTree, Record, RemoteTree
from .._profiles import Profile
from .._progress import Progress
from .._retry import Retrier, Throttle
from .._routes import RouteMemo
from .._state import StateStore
from .._urls import S3URL

__all__ = ["EngineOptions", "RateLimit", "Resources", "Sources", "Target", "Throttle", "retrying", "run_all"]

log = logging.getLogger("pos3")
T = TypeVar("T")

FILE_THREADS = 40  # worker threads of the per-file hop (`Resources.in_thread`): anyio's default too


@dataclass(frozen=True, kw_only=True)
class EngineOptions:
    """Tuning of one engine (set from `pos3.mirror` arguments; see its docstring)."""

    max_workers: int | None = None  # None: chosen per transfer from the object sizes (_concurrency)
    max_upload_bytes_per_second: float | None = None
    part_size: int = 8 << 20
    download_part_size: int | None = None  # None: larger ranges for larger objects (see _policy)
    upload_buffer_bytes: int = 24 << 20  # upload bodies held in memory at once, across workers
    multipart_threshold: int = 8 << 20
    ranged_threshold: int = 32 << 20
    retry: _policy.RetrySettings = field(default_factory=_policy.RetrySettings)
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


@dataclass
class Sources:
    """What one operation found: the listing, the local tree and the records."""

    prefix: str
    single: bool
    remote: RemoteTree
    local: LocalTree
    records: dict[str, Record]
    empty: bool = False
    root_is_file: bool = False  # a file stands where the (cache) folder goes: replaced
    scanned_ns: int = 0  # wall clock just before the local scan: when its stats were taken


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


async def retrying(res: Resources, url: str, send: Callable[[], Awaitable[T]]) -> T:
    """One request, retried through connection failures and throttling until the outage budget
    is spent (`Retrier.call`: the same rule as every other request of the mirror)."""
    return await res.retrier.call(url, send)


class Resources:
    """The clients, limits and state store of one mirror, on the loop that created them."""

    def __init__(self, cache_root: Path, options: EngineOptions, progress: Progress) -> None:
        self.cache_root = cache_root
        self.private = cache_root / ".pos3"
        self.options = options
        self.progress = progress
        self.retrier = Retrier(options.retry)
        self.throttle = self.retrier.throttle
        self.pool = ClientPool(options.clients, lambda: self.throttle.answered(slowed=True), self.retrier,
                               RouteMemo(self.private / "routes.json"))
        # Every request of the mirror at once; each transfer also has its own limit (`run_each`).
        self.limiter = anyio.Semaphore(options.max_workers or MAX_IN_FLIGHT)
        self.hash_limiter = anyio.Semaphore(max(2, os.cpu_count() or 2))
        # Upload bodies are read whole into memory: this bounds how many are at once, so peak
        # memory stays near upload_buffer_bytes whatever max_workers and file sizes are.
        self.body_slots = anyio.Semaphore(max(1, options.upload_buffer_bytes // options.part_size))
        rate = options.max_upload_bytes_per_second
        self.rate = RateLimit(rate) if rate else None
        self._store: StateStore | None = None
        self._threads: ThreadPoolExecutor | None = None

    async def in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a worker thread: the one hop of each small file (read or write it).

        As `anyio.to_thread.run_sync`, a cancellation waits until ``fn`` has returned and is
        then raised, so nothing of the file's work outlives its task. At about half the loop's
        CPU: no checkpoint before the call, no capacity limiter (the transfer's workers already
        bound the calls), and a cancel scope only when cancelled. The threads belong to this
        mirror (made on first use, released by `aclose`).
        """
        if self._threads is None:
            self._threads = ThreadPoolExecutor(FILE_THREADS, thread_name_prefix="pos3-file")
        done = asyncio.wrap_future(self._threads.submit(fn, *args))  # run_in_executor, less its checks
        try:
            return await asyncio.shield(done)  # a cancellation leaves the call running: waited for below
        except asyncio.CancelledError:
            with anyio.CancelScope(shield=True):
                await asyncio.wait([done])
            raise

    async def store(self) -> StateStore:
        if self._store is None:
            self._store = await anyio.to_thread.run_sync(StateStore, self.private / "state.db")
        return self._store

    def has_store(self) -> bool:
        """Whether a state store is open or exists on disk (planning alone never creates one)."""
        return self._store is not None or (self.private / "state.db").exists()

    async def aclose(self) -> None:
        await self.pool.aclose()
        if self._threads is not None:
            self._threads.shutdown(wait=False)  # idle by now: every task that used them has ended
            self._threads = None
        if self._store is not None:
            self._store.close()

    async def run_each(self, fn: Callable[[Copy], Coroutine[Any, Any, object]], copies: Iterable[Copy],
                       whole: Callable[[Copy], bool]) -> None:
        """Run ``fn(c)`` for every copy; returns when all are done.

        Copies sent in one request (``whole(c)``, and folders) are taken in order by a fixed set
        of workers, as many as the transfer's requests in flight (`requests_in_flight` of their
        sizes); each holds a slot of the mirror's limiter while it runs one. The others (ranged
        or multipart, which take the limiter per part) get a task each. No task per small file,
        and a free limiter slot is taken without yielding to the loop.
        """
        items = list(copies)
        small = [c for c in items if c.is_dir or whole(c)]
        large = [c for c in items if not (c.is_dir or whole(c))]
        shared = iter(small)  # one iterator for every worker: each copy is taken once, in order
        limiter = self.limiter

        async def worker() -> None:
            for c in shared:
                try:
                    limiter.acquire_nowait()
                except anyio.WouldBlock:
                    await limiter.acquire()
                try:
                    await fn(c)
                finally:
                    limiter.release()

        workers = min(len(small), requests_in_flight([c.size for c in small if not c.is_dir],
                                                     self.options.max_workers))
        async with anyio.create_task_group() as tg:
            for _ in range(workers):
                tg.start_soon(worker)
            for c in large:
                tg.start_soon(fn, c)
