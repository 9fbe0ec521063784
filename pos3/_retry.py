"""Carrying out retry decisions: the mirror-wide throttle and the backoff step of every request.

The decisions are pure (`pos3._policy.classify`, `after_failure`, `throttle_level`,
`throttle_pause`); this module only waits. One `Retrier` per mirror is shared by every client
(`pos3._clients.ClientPool` hands it to each `pos3._s3.S3`) and every transfer, so that one
outage budget rule and one throttle cover every request pos3 makes. No aiobotocore import.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

from . import _policy

__all__ = ["Retrier", "Throttle"]

log = logging.getLogger("pos3")
T = TypeVar("T")


class Throttle:
    """The mirror-wide pause after throttling answers (503 SlowDown), shared by every worker.

    Levels and pauses are decided by `_policy.throttle_level` and `_policy.throttle_pause`;
    every request waits here first, so a throttled endpoint sees the whole mirror slow down.
    """

    def __init__(self) -> None:
        self.level = 0
        self.resume_at = 0.0

    async def wait(self) -> None:
        delay = self.resume_at - time.monotonic()
        if delay > 0:
            await anyio.sleep(delay)

    def answered(self, *, slowed: bool) -> None:
        now = time.monotonic()
        level = _policy.throttle_level(self.level, now=now, resume_at=self.resume_at, slowed=slowed)
        if slowed and now >= self.resume_at:
            self.resume_at = now + _policy.throttle_pause(level, random.random())
            log.info("the endpoint is throttling (503 SlowDown): every worker pauses %.1f s",
                     self.resume_at - now)
        self.level = level

    def ok(self) -> None:
        """An answer that was not throttled: the level recovers (nothing to do at level 0)."""
        if self.level:
            self.answered(slowed=False)


class Retrier:
    """The retry settings and the throttle of one mirror: the backoff step every request takes."""

    def __init__(self, settings: _policy.RetrySettings, throttle: Throttle | None = None) -> None:
        self.settings = settings
        self.throttle = throttle if throttle is not None else Throttle()

    async def back_off(self, state: _policy.Attempts, exc: BaseException, *, answered: bool, progressed: bool,
                       what: str) -> _policy.Attempts | None:
        """After a failed attempt: classify ``exc`` (already translated), tell the throttle, and
        sleep the delay `_policy.after_failure` decides; the new state, or ``None`` to give up.

        ``answered`` tells whether response headers had arrived (a broken body), ``progressed``
        whether the attempt brought new bytes; ``what`` starts the log line.
        """
        fault = _policy.classify(exc, answered=answered)
        if fault is _policy.Fault.THROTTLE:
            self.throttle.answered(slowed=True)
        state, delay = _policy.after_failure(state, fault, progressed=progressed, now=time.monotonic(),
                                             rand=random.random(), settings=self.settings)
        if delay is None:
            return None
        log.info("%s: %s; retrying in %.2f s", what, exc, delay)
        await anyio.sleep(delay)
        return state

    async def call(self, url: str, send: Callable[[], Awaitable[T]]) -> T:
        """One request (``send``, which raises translated errors), retried through connection
        failures and throttling until the outage budget is spent; other errors raise at once."""
        state = _policy.Attempts()
        while True:
            await self.throttle.wait()
            try:
                out = await send()
            except Exception as exc:
                found = await self.back_off(state, exc, answered=False, progressed=False, what=url)
                if found is None:
                    raise
                state = found
                continue
            self.throttle.ok()
            return out
