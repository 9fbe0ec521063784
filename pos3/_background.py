"""Background uploads of one mirror: every ``interval`` seconds, or at once when requested.

The loop runs in the mirror's task group (its owner), started by the first registration with
an interval or the first `request_upload`. A failed background upload is logged and retried at
the next interval: the one documented exception to "failures are raised". Periodic uploads
leave files that are still changing (``settle``) for later; requested and exit uploads do not.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import anyio
from anyio.abc import TaskGroup

from ._engine import Engine
from ._errors import Failure, Pos3Error, TransferError
from ._registry import UploadReg

__all__ = ["UploadScheduler", "due_uploads", "next_wake"]


def due_uploads(uploads: Sequence[UploadReg], now: float, requested: bool) -> list[UploadReg]:
    """The uploads to run now: all when requested, else those whose interval has passed."""
    if requested:
        return list(uploads)
    return [u for u in uploads if u.interval is not None and now - u.last_sync >= u.interval]


def next_wake(uploads: Sequence[UploadReg], now: float) -> float:
    """Seconds to sleep before looking again: until the next upload is due, at most 1, at least 0.05."""
    waits = [u.last_sync + u.interval - now for u in uploads if u.interval is not None]
    timeout = min([1.0, *waits]) if waits else 1.0
    return max(timeout, 0.05)


class UploadScheduler:
    """Runs the uploads of a mirror: on demand (`sync`), and periodically in the background."""

    def __init__(self, uploads: Mapping[Any, UploadReg], engine: Callable[[], Engine]) -> None:
        self._uploads = uploads
        self._engine = engine
        self._lock = anyio.Lock()
        self._wake = anyio.Event()
        self._requested = False
        self._started = False
        self._scope: anyio.CancelScope | None = None
        self.closing = False

    async def sync(self, uploads: Sequence[UploadReg], *, quiescent: bool = False) -> None:
        """Upload ``uploads`` concurrently; one `TransferError` names every failure."""
        failures: list[Failure] = []
        engine = self._engine()

        async def one(u: UploadReg) -> None:
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

        async with self._lock, anyio.create_task_group() as tg:
            for u in uploads:
                tg.start_soon(one, u)
        if failures:
            raise TransferError.of("upload", failures)

    def ensure_started(self, tg: TaskGroup) -> None:
        """Start the background loop in ``tg`` unless it runs already or the mirror is closing."""
        if not self._started and not self.closing:
            self._started = True
            tg.start_soon(self._run)

    def request(self, tg: TaskGroup) -> None:
        """Upload every registration within a second."""
        self._requested = True
        self.ensure_started(tg)
        self._wake.set()

    def cancel(self) -> None:
        if self._scope is not None:
            self._scope.cancel()

    async def _run(self) -> None:
        log = logging.getLogger("pos3")
        with anyio.CancelScope() as scope:
            self._scope = scope
            while True:
                requested, self._requested = self._requested, False
                due = due_uploads(list(self._uploads.values()), time.monotonic(), requested)
                if due:
                    try:
                        await self.sync(due, quiescent=not requested)
                    except Exception as exc:  # the one documented exception: retried next interval
                        log.warning("pos3: background upload failed, retrying at the next interval: %s", exc)
                with anyio.move_on_after(next_wake(list(self._uploads.values()), time.monotonic())):
                    await self._wake.wait()
                if self._wake.is_set():
                    self._wake = anyio.Event()
