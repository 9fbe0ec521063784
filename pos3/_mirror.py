"""`AsyncMirror` / `amirror()`: the public async API, forwarding to the parts that do the work.

`pos3._registry` resolves calls to targets and holds the registrations and their conflict
rules; `pos3._background` schedules uploads; `pos3._engine` transfers. The methods here
validate arguments, pick the registration and forward.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import anyio

from ._docstrings import forward_doc
from ._engine import ListEntry
from ._exclude import Excluder
from ._gather import ls_local, ls_local_entries
from ._lifecycle import MirrorCore, cache_limit, engine_options
from ._plan import TransferPlan
from ._profiles import resolve_profile
from ._registry import (
    Exclude,
    ProfileArg,
    default_cache_root,
    is_local,
    need_url,
    with_selector,
)
from ._shard import check_shard
from ._urls import bucket_listing

__all__ = ["AsyncMirror", "Exclude", "ProfileArg", "amirror", "default_cache_root"]

log = logging.getLogger("pos3")


class AsyncMirror(MirrorCore):
    """Mirror S3 prefixes onto local disk from asyncio code.

    Use it as ``async with pos3.amirror() as m:``; every method is awaitable and runs on the
    caller's event loop. Leaving the block uploads every registered upload (only those with
    ``sync_on_error=True`` when the block raised; none on cancellation or Ctrl-C).

    Args:
        cache_root: Where mirrors live; ``$POS3_CACHE_ROOT`` or ``~/.cache/pos3`` by default.
        show_progress: Progress bars (bytes, rate, ETA) on stderr.
        max_workers: Requests in flight. ``None`` (the default): chosen for each transfer from the
            sizes of its objects, up to 256 for small objects and fewer for larger ones, with
            about 64 MiB of bodies in flight at most (see the Performance page, "Requests in
            flight"). A number: exactly that many, for every transfer.
        default_profile: Profile used when a call names none.
        max_upload_bytes_per_second: One total upload rate for every worker; ``None``: no limit.
        cache_max_bytes: Evict least recently used downloaded trees past this size;
            ``$POS3_CACHE_MAX_BYTES`` by default, else no limit.
        lock_timeout: Seconds to wait for another process (or mirror) holding a local folder.
        connect_timeout: Seconds to open a connection.
        read_timeout: Seconds without a byte before a read fails.
        retry_mode: botocore retry mode, ``"standard"`` or ``"adaptive"``.
        max_attempts: Total attempts per request, the first one included.
        stall_timeout: Seconds without a byte of a response body before pos3 aborts it and
            resumes from the last good byte (default 15 s). Separate from ``read_timeout``,
            which stays a backstop.
        outage_budget: Seconds a transfer keeps retrying connection failures (refused, reset,
            DNS, TLS handshake, no answer) and throttling before it is reported as failed
            (default 60 s: covers 30 s of unavailability; see docs/guarantees.md).
        ca_bundle: A PEM file with the CA certificate(s) to trust for every HTTPS endpoint of this
            mirror, e.g. a private CA; wins over each profile's ``ca_bundle``, ``$AWS_CA_BUNDLE``
            and the public CAs (the command line's ``--ca-bundle``). ``None`` (the default): each
            profile's own setting. Read when the first request is made.
        verify: ``False`` turns TLS certificate checks off for every endpoint of this mirror,
            whatever the profiles say (the command line's ``--no-verify-ssl``; only for a test
            server on a trusted network). ``True`` (the default): each profile's own setting.

    Raises:
        ValueError: An argument is out of range (``max_workers`` below 1, a rate that is not
            positive, an unknown ``retry_mode``, a ``stall_timeout`` or ``outage_budget`` that is not
            positive, an empty ``ca_bundle``, or ``ca_bundle`` together with ``verify=False``).
        ProfileError: ``default_profile`` names an unknown profile.
    """

    def __init__(
        self,
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
    ) -> None:
        super().__init__(
            engine_options(max_workers, max_upload_bytes_per_second, lock_timeout, connect_timeout, read_timeout,
                           retry_mode, max_attempts, stall_timeout=stall_timeout, outage_budget=outage_budget,
                           ca_bundle=ca_bundle, verify=verify),
            (Path(cache_root).expanduser() if cache_root is not None else default_cache_root()).resolve(),
            cache_limit(cache_max_bytes),
            resolve_profile(default_profile),
            show_progress,
        )

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
                seconds (its mtime at least this much older than the scan, and the file still
                as the scan saw it when read), so a checkpoint still being written is never
                uploaded half-done; the upload on exit sends everything. ``None`` or 0: no waiting.
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
        if is_local(remote):
            path = Path(remote).expanduser().resolve()
            await anyio.to_thread.run_sync(lambda: path.mkdir(parents=True, exist_ok=True))
            return path
        assert isinstance(remote, str)
        return await self._register_upload(remote, local, interval, delete, sync_on_error, exclude, profile, settle,
                                           atomic)

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

        An empty prefix is fine here (a job's first run): the local folder is created. The
        download keeps local work: a file never in sync, or changed locally since its record,
        is neither overwritten nor deleted, and the upload sends it. Only files in sync by
        their record follow S3. A file changed both locally and in S3 is a conflict: nothing
        is changed and `TransferError` names it (see docs/change-detection.md).

        Args:
            remote: ``s3://`` URL, or a local path (returned unchanged).
            local: Local path; defaults to the cache path of ``remote``.
            interval: Seconds between background uploads; ``None`` uploads only on exit.
            delete_local: Delete local files that were in sync and are gone from S3 (local work
                is kept either way).
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
            TransferError: Some objects failed to download, or files changed both locally and
                in S3 (each a ``FileExistsError`` naming the file; nothing was changed).
        """
        if is_local(remote):
            return Path(remote).expanduser().resolve()
        assert isinstance(remote, str)
        return await self._register_sync(remote, local, interval, delete_local, delete_remote, sync_on_error, exclude,
                                         profile, settle, atomic)

    async def ls(self, prefix: str | os.PathLike[str], recursive: bool = False, profile: ProfileArg = None
                 ) -> list[str]:
        """List an S3 prefix (full ``s3://`` URLs), the buckets, or a local folder (paths), sorted.

        Args:
            prefix: ``s3://`` URL or local path; ``s3://`` (or ``s3://profile@``) lists the
                buckets the credentials own, as ``s3://bucket`` URLs.
            recursive: Include everything below, not only the first level.
            profile: Profile name or `Profile`; a profile in the URL wins.

        Returns:
            Files and folders, folders without a trailing slash.

        Raises:
            InvalidURLError: ``prefix`` is a malformed URL.
            NotFoundError: The bucket does not exist (a missing local folder lists as ``[]``).
            AccessDeniedError: The credentials may not list it.
        """
        if isinstance(prefix, str) and bucket_listing(prefix)[0]:
            return [e.name for e in await self.ls_entries(prefix, recursive, profile)]
        if is_local(prefix):
            return await anyio.to_thread.run_sync(ls_local, Path(prefix).expanduser(), recursive)
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
        if isinstance(prefix, str):
            is_buckets, selector = bucket_listing(prefix)
            if is_buckets:  # s3:// lists the buckets, as `aws s3 ls` does
                chosen = selector if selector is not None else profile
                resolved = self.default_profile if chosen is None else resolve_profile(chosen)
                s3 = await self.engine.pool.get(resolved)
                shown = f"s3://{selector}@" if selector else "s3://"
                return [ListEntry(f"{shown}{name}", True) for name in await s3.buckets()]
        if is_local(prefix):
            return await anyio.to_thread.run_sync(ls_local_entries, Path(prefix).expanduser(), recursive)
        assert isinstance(prefix, str)
        target = self._registry.target(prefix, None, profile)
        entries = await self.engine.ls_entries(target.url, target.profile, recursive)
        return [dataclasses.replace(e, name=with_selector(e.name, prefix)) for e in entries]

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
        return self._registry.target(remote, local, profile).local

    async def plan_download(
        self,
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

        Args:
            remote: ``s3://[profile@]bucket/key`` URL.
            local: Local destination; defaults to the cache path.
            delete: Plan deletes of local files that are absent in S3.
            exclude: Glob patterns skipped on both sides.
            profile: Profile name or `Profile`; a profile in the URL wins.
            shard: ``(rank, world_size)``: plan only this rank's share of the files (see
                `download`). ``None`` (default): the whole prefix.
            keep_local: Plan the download that `sync` runs: local work is kept (``"keep"``
                actions) and files changed on both sides are ``"conflict"`` actions.

        Returns:
            A `TransferPlan` with ``to_copy``, ``to_delete`` and each action's reason.

        Raises:
            InvalidURLError: ``remote`` is a malformed URL, or a local path (a plan needs an
                ``s3://`` URL; also a ``ValueError``, as in pos3 0.4.0).
            NotFoundError: The bucket does not exist or the prefix holds no object.
            AccessDeniedError: The credentials may not read it.
        """
        need_url("plan_download", remote)
        target = self._registry.target(str(remote), local, profile)
        return await self.engine.plan_download(target, delete=bool(delete), exclude=Excluder.of(exclude),
                                               shard=check_shard(shard), keep_local=bool(keep_local))

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
            remote: Destination ``s3://`` URL.
            local: Local source; defaults to the cache path of ``remote``.
            delete: Plan deletes of objects that are absent locally.
            exclude: Glob patterns skipped on both sides.
            profile: Profile name or `Profile`; a profile in the URL wins.

        Returns:
            A `TransferPlan` with ``to_copy``, ``to_delete`` and each action's reason.

        Raises:
            InvalidURLError: ``remote`` is a malformed URL, or a local path (a plan needs an
                ``s3://`` URL; also a ``ValueError``, as in pos3 0.4.0).
            NotFoundError: The bucket does not exist.
            AccessDeniedError: The credentials may not list it.
        """
        need_url("plan_upload", remote)
        target = self._registry.target(str(remote), local, profile)
        return await self.engine.plan_upload(target, delete=bool(delete), exclude=Excluder.of(exclude))

    def request_upload(self) -> None:
        """Start a background upload of every registration within a second; returns at once."""
        self.engine  # noqa: B018
        self._scheduler.request(self._tg)

    async def flush(self) -> None:
        """Upload every registration now and wait for it.

        Raises:
            TransferError: Some objects failed; every other object was uploaded.
        """
        self.engine  # noqa: B018
        await self._scheduler.sync(list(self._registry.uploads.values()))


@forward_doc(AsyncMirror, only_args=True)
def amirror(
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
) -> AsyncMirror:
    """An async context manager mirroring S3 for asyncio code: ``async with pos3.amirror() as m:``.

    The arguments are those of [`AsyncMirror`][pos3.AsyncMirror] (documented there once), with
    the same names and defaults.

    Returns:
        The `AsyncMirror`; its uploads run when the ``async with`` block ends.

    Raises:
        ValueError: An argument is out of range.
        ProfileError: ``default_profile`` names an unknown profile.
    """
    return AsyncMirror(cache_root, show_progress, max_workers, default_profile, max_upload_bytes_per_second,
                       cache_max_bytes=cache_max_bytes, lock_timeout=lock_timeout, connect_timeout=connect_timeout,
                       read_timeout=read_timeout, retry_mode=retry_mode, max_attempts=max_attempts,
                       stall_timeout=stall_timeout, outage_budget=outage_budget, ca_bundle=ca_bundle, verify=verify)
