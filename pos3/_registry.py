"""Registrations of one mirror: how a call is resolved to a target, and the rules of conflict.

A download or upload registration is told apart by bucket, key and cache folder. Repeating
one with the same arguments is allowed (a download waits for, and returns, the first one's
result; a caller's cancellation is its own); with other arguments it is a `RegistrationError`,
and so is any overlap between a download and an upload, or between two uploads, of the same
bucket and cache folder.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from anyio.abc import TaskGroup

from ._errors import InvalidURLError, NoMirrorError, RegistrationError
from ._exclude import Excluder
from ._profiles import DEFAULT_LOCAL_NAME, Profile, resolve_profile
from ._transfer.context import Target
from ._urls import S3URL, is_url_like, overlaps, parse_s3_url

__all__ = [
    "DownloadReg",
    "Exclude",
    "ProfileArg",
    "Registry",
    "UploadReg",
    "check_interval",
    "check_settle",
    "default_cache_root",
    "is_local",
    "need_url",
    "uploads_on_exit",
    "with_selector",
]

ProfileArg = str | Profile | None
Exclude = str | Sequence[str] | None
Key = tuple[str, str, str]


def default_cache_root() -> Path:
    """``$POS3_CACHE_ROOT``, else ``~/.cache/pos3``."""
    return Path(os.environ.get("POS3_CACHE_ROOT") or "~/.cache/pos3").expanduser()


# Seconds the last caller of a cancelled download waits for its cleanup (partial files removed).
CLEANUP_WAIT = 30.0


@dataclass
class DownloadReg:
    """One download of a mirror, shared by every caller that asks for it.

    Attributes:
        params: The arguments it was asked with; a repeat must use the same.
        local: Where it lands.
        done: Set when it ended (finished, failed or cancelled).
        error: Why it did not finish, raised in every caller.
        waiters: The callers waiting for it now.
        scope: The download's own scope, cancelled when its last waiter leaves.
    """

    params: tuple[object, ...]
    local: Path
    done: anyio.Event = field(default_factory=anyio.Event)
    error: BaseException | None = None
    waiters: int = 0
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)


@dataclass
class UploadReg:
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


def check_settle(settle: float | None) -> float | None:
    if settle is None or settle == 0:
        return None
    if isinstance(settle, bool) or not isinstance(settle, int | float) or not math.isfinite(settle) or settle < 0:
        raise ValueError(f"settle must be a non-negative number of seconds or None, not {settle!r}")
    return float(settle)


def check_interval(interval: float | None) -> float | None:
    if interval is None:
        return None
    if isinstance(interval, bool) or not isinstance(interval, int | float) or not math.isfinite(interval) \
            or interval <= 0:
        raise ValueError(f"interval must be a positive number of seconds or None, not {interval!r}")
    return float(interval)


def is_local(remote: str | os.PathLike[str]) -> bool:
    """Whether ``remote`` is a local path (passed through) rather than an ``s3://`` URL."""
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


def need_url(what: str, remote: str | os.PathLike[str]) -> None:
    """Refuse a local path where only an ``s3://`` URL makes sense (as pos3 0.4.0 did).

    Raises:
        InvalidURLError: ``remote`` is a local path (also a ``ValueError``), or a malformed URL.
    """
    if is_local(remote):
        raise InvalidURLError(f"{os.fspath(remote)}: {what} needs an s3:// URL, not a local path")


def with_selector(name: str, url: str) -> str:
    """Put the ``profile@`` of ``url`` back on a listed name, so it can be passed on as is."""
    selector = parse_s3_url(url).profile
    return name.replace("s3://", f"s3://{selector}@", 1) if selector else name


def prepare_upload_path(target: Target) -> None:
    """Create the folder an upload registration reads (only the parent of a file-like name)."""
    path = target.local
    if path.exists():
        return
    named_like_file = bool(_FILE_SUFFIX.search(path.name))
    looks_like_file = bool(target.url.stem) and not target.url.trailing_slash and named_like_file
    (path.parent if looks_like_file else path).mkdir(parents=True, exist_ok=True)


def uploads_on_exit(uploads: Sequence[UploadReg], exc_type: type[BaseException] | None,
                    exc: BaseException | None) -> tuple[list[UploadReg], bool]:
    """Which uploads run when the mirror closes, and whether the block ended cleanly.

    A clean exit (or ``sys.exit(0)``) uploads all; an exception only ``sync_on_error`` ones;
    Ctrl-C and cancellation none (never upload, never delete remotely).
    """
    clean = exc_type is None or (isinstance(exc, SystemExit) and exc.code in (None, 0))
    if clean:
        return list(uploads), True
    if isinstance(exc, Exception | SystemExit):
        return [u for u in uploads if u.sync_on_error], False
    return [], False


class Registry:
    """The downloads and uploads registered in one mirror, and how calls resolve to targets."""

    def __init__(self, cache_root: Path, default_profile: Profile | None) -> None:
        self.cache_root = cache_root
        self.default_profile = default_profile
        self.downloads: dict[Key, DownloadReg] = {}
        self.uploads: dict[Key, UploadReg] = {}

    def target(self, remote: str, local: str | os.PathLike[str] | None, profile: ProfileArg) -> Target:
        """Resolve a URL, an optional local path and a profile to the target they name."""
        url = parse_s3_url(remote)
        # The URL's selector wins over profile=, which wins over default_profile; "_" names the
        # default chain explicitly (resolve_profile gives None for it), so it is not replaced.
        selector = url.profile if url.profile is not None else profile
        resolved = self.default_profile if selector is None else resolve_profile(selector)
        if url.profile is not None:
            url = S3URL(url.bucket, url.key, None, url.trailing_slash)
        if local is not None and not os.fspath(local).strip():
            # An unset shell variable: never "the current folder", which delete=True would empty.
            raise ValueError("local is empty; give a folder or file path, or local=None for the cache path")
        if local is None:
            name = resolved.local_name if resolved is not None else DEFAULT_LOCAL_NAME
            path = self.cache_root / name / url.bucket
            if url.stem:
                path = path.joinpath(*url.stem.split("/"))
            return Target(url, resolved, path, explicit_local=False)
        return Target(url, resolved, Path(local).expanduser().resolve(), explicit_local=True)

    @staticmethod
    def key(target: Target) -> Key:
        """Registrations are told apart by bucket, key and cache folder (the profile's local name):
        two profiles sharing a folder would otherwise write one tree unnoticed."""
        folder = target.profile.local_name if target.profile is not None else DEFAULT_LOCAL_NAME
        return (target.url.bucket, target.url.stem, folder)

    def conflicts(self, target: Target, table: dict[Key, DownloadReg] | dict[Key, UploadReg], what: str) -> None:
        """Raise `RegistrationError` when ``target`` overlaps an entry of ``table``."""
        bucket, stem, profile = self.key(target)
        for (b, s, p) in table:
            if b == bucket and p == profile and overlaps(s, stem):
                raise RegistrationError(f"Conflict: s3://{bucket}/{stem} overlaps the {what} of s3://{b}/{s}")

    async def download(self, target: Target, params: tuple[object, ...], fetch: Callable[[], Awaitable[None]],
                       tg: TaskGroup) -> Path:
        """Run ``fetch`` as the download registration of ``target`` (once per mirror); wait for it.

        The download runs in ``tg`` (the mirror's task group), not in the caller's task, so
        every caller of the same download waits for one result and a caller's cancellation is
        its own: the others keep waiting and the download goes on. When the last waiting caller
        is cancelled, nobody wants the result any more: the download is cancelled, and that
        caller waits (shielded, at most `CLEANUP_WAIT` s) until its partial files are removed.
        """
        key = self.key(target)
        reg = self.downloads.get(key)
        if reg is not None:
            if reg.params != params:
                raise RegistrationError(
                    f"{target.url}: download already registered with different parameters in this mirror"
                )
        else:
            self.conflicts(target, self.uploads, "upload")
            reg = self.downloads[key] = DownloadReg(params, target.local)
            tg.start_soon(self._run, key, reg, fetch, str(target.url))
        return await self._wait(key, reg)

    async def _run(self, key: Key, reg: DownloadReg, fetch: Callable[[], Awaitable[None]], url: str) -> None:
        finished = False
        try:
            with reg.scope:
                await fetch()
                finished = True
        except Exception as exc:
            reg.error = exc
        finally:
            if not finished:
                if reg.error is None:  # the mirror closed, or every caller left
                    reg.error = NoMirrorError(f"{url}: the mirror closed before this download finished")
                if self.downloads.get(key) is reg:
                    del self.downloads[key]  # a later call starts it again
            reg.done.set()

    async def _wait(self, key: Key, reg: DownloadReg) -> Path:
        reg.waiters += 1
        try:
            await reg.done.wait()
        finally:
            reg.waiters -= 1
            if reg.waiters == 0 and not reg.done.is_set():  # the last caller was cancelled
                if self.downloads.get(key) is reg:
                    del self.downloads[key]
                reg.scope.cancel()
                with anyio.move_on_after(CLEANUP_WAIT, shield=True):
                    await reg.done.wait()
        if reg.error is not None:
            raise reg.error
        return reg.local

    def existing_upload(self, target: Target, params: tuple[object, ...]) -> Path | None:
        """The path of the same upload registered before; else check it conflicts with none."""
        existing = self.uploads.get(self.key(target))
        if existing is not None:
            if existing.params != params:
                raise RegistrationError(
                    f"{target.url}: upload already registered with different parameters in this mirror"
                )
            return existing.target.local
        self.check_new_upload(target)
        return None

    def check_new_upload(self, target: Target) -> None:
        """An upload may overlap no download and no other upload."""
        self.conflicts(target, self.downloads, "download")
        self.conflicts(target, self.uploads, "upload")

    def same_upload(self, target: Target, params: tuple[object, ...]) -> Path | None:
        """The path of an upload registered with exactly ``params``, else ``None``."""
        existing = self.uploads.get(self.key(target))
        return existing.target.local if existing is not None and existing.params == params else None
