"""The coordinator of one mirror: owns clients, limits and the state store; hands out each batch.

`Engine` plans an operation (`pos3._gather` finds what is there, `pos3._plan` decides) under
the per-folder lock, then hands the plan to the module for its job: `pos3._transfer.download`,
`pos3._transfer.upload` or `pos3._transfer.publish`. Every object of a batch runs in a task
of one task group; a failed object is collected, never stops the others, and the batch ends
with one `TransferError` naming all of them. Cancellation (Ctrl-C) removes partial files and
propagates. See docs/architecture.md.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
from collections.abc import Mapping

import anyio

from . import _gather, _policy
from ._errors import Failure, NotFoundError, TransferError
from ._exclude import Excluder
from ._gather import ListEntry
from ._plan import Plan, RemoteTree, TransferPlan, plan_download, plan_upload
from ._profiles import Profile
from ._shard import shard_members
from ._state import root_lock
from ._transfer import download, publish, upload
from ._transfer.context import EngineOptions, Resources, Sources, Target
from ._urls import S3URL

__all__ = ["Engine", "EngineOptions", "ListEntry", "Target"]

log = logging.getLogger("pos3")


def _conflict(target: Target, src: Sources, rel: str) -> FileExistsError:
    """The error of one file changed both locally and in S3: nothing was changed."""
    path = target.local / rel if rel else target.local
    url = target.url.child(src.prefix + rel)
    return FileExistsError(
        errno.EEXIST,
        f"changed locally and in S3 ({url}) since the last sync; both versions were left as they are. "
        "Keep the local one with upload() (the local file wins), or move the local file away and sync "
        "again to take the one in S3",
        str(path),
    )


class Engine(Resources):
    """Runs downloads, uploads and listings for one mirror, on the loop that created it."""

    async def _plan(self, target: Target, direction: str, delete: bool, exclude: Excluder,
                    shard: tuple[int, int] | None = None, keep_local: bool = False
                    ) -> tuple[Sources, Plan, dict[str, str]]:
        """Gather, narrow to the snapshot or shard, plan; answer the plan's checks and plan again."""
        src = await _gather.gather(self, target, direction=direction)
        if direction == "download" and not src.single:
            await publish.use_snapshot(self, target, src)
        if shard is not None and not src.single:
            files = src.remote.files
            chosen = shard_members({r: f.size for r, f in files.items() if not exclude.excluded(r)}, *shard)
            src.remote = RemoteTree({r: f for r, f in files.items() if r in chosen}, src.remote.markers)

        def run(evidence: Mapping[str, bool] | None) -> Plan:
            if direction == "download":
                return plan_download(src.prefix, src.remote, src.local, src.records, delete=delete,
                                     exclude=exclude, evidence=evidence, keep_local=keep_local)
            return plan_upload(src.prefix, src.local, src.remote, src.records, delete=delete,
                               exclude=exclude, evidence=evidence)

        plan = run(None)
        digests: dict[str, str] = {}
        if plan.checks:
            evidence, digests = await _gather.evidence(self, target, src, plan.checks)
            plan = run(evidence)
        return src, plan, digests

    # ------------------------------------------------------------------ download

    async def plan_download(self, target: Target, *, delete: bool, exclude: Excluder,
                            shard: tuple[int, int] | None = None, keep_local: bool = False) -> TransferPlan:
        src, plan, _ = await self._plan(target, "download", delete, exclude, shard, keep_local)
        if src.empty:
            raise NotFoundError(f"{target.url}: no objects under this prefix", url=str(target.url))
        return _gather.describe(target, src, plan, "download")

    async def download(self, target: Target, *, delete: bool, exclude: Excluder, allow_empty: bool = False,
                       shard: tuple[int, int] | None = None, keep_local: bool = False) -> int:
        """Make ``target.local`` an exact mirror of ``target.url`` (or of one shard of it).

        With ``keep_local`` (``sync()``), local work is kept for the upload, and a file changed
        on both sides stops the download before anything changed (see `plan_download`).

        Returns:
            The bytes the mirrored tree holds.

        Raises:
            TransferError: Conflicts (``keep_local``), each a ``FileExistsError`` naming the
                file; or objects that failed to download.
        """
        async with root_lock(self.private, target.local, self.options.lock_timeout):
            src, plan, digests = await self._plan(target, "download", delete, exclude, shard, keep_local)
            if plan.conflicts:
                raise TransferError.of("download", [Failure(str(target.local / rel if rel else target.local),
                                                            _conflict(target, src, rel)) for rel in plan.conflicts])
            if plan.kept:
                log.info("%s: keeping %d local files changed since the last sync (%s); the upload sends them",
                         target.local, len(plan.kept), ", ".join(plan.kept[:5]))
            if src.empty:
                if not allow_empty:
                    raise NotFoundError(f"{target.url}: no objects under this prefix", url=str(target.url))
                return 0  # sync() on a first run: the upload registration prepares the path
            kept = [r for r, f in src.remote.files.items() if not exclude.excluded(r)]
            await download.run_download(self, target, src, plan, digests,
                                        counts=_counts(len(kept), len(src.remote.files) - len(kept), plan))
            return sum(src.remote.files[r].size for r in kept)

    # ------------------------------------------------------------------ upload

    async def plan_upload(self, target: Target, *, delete: bool, exclude: Excluder) -> TransferPlan:
        src, plan, _ = await self._plan(target, "upload", delete, exclude)
        return _gather.describe(target, src, plan, "upload")

    async def upload(self, target: Target, *, delete: bool, exclude: Excluder, settle: float | None = None) -> None:
        """Make ``target.url`` an exact copy of ``target.local`` (a missing local path: no-op).

        With ``settle``, files modified less than ``settle`` seconds before the scan are left for a
        later sync, and so is a file written after the scan: a periodic upload sends only a state
        it saw at rest for ``settle`` seconds, never a file that is still being written.
        """
        exists = await anyio.to_thread.run_sync(target.local.exists)
        if not exists:
            log.info("%s does not exist; nothing to upload to %s", target.local, target.url)
            return
        async with root_lock(self.private, target.local, self.options.lock_timeout):
            await upload.abort_stale_multipart(self, target)
            src, plan, digests = await self._plan(target, "upload", delete, exclude)
            recent: set[str] | frozenset[str] = frozenset()
            if settle:
                cutoff = _policy.settle_cutoff(src.scanned_ns, settle)
                recent = set(_policy.unsettled(((c.rel, src.local.files[c.rel].mtime_ns) for c in plan.copies
                                                if not c.is_dir), cutoff))
                if recent:
                    log.debug("%s: %d files still changing; left for a later sync", target.local, len(recent))
                    plan = dataclasses.replace(plan, copies=tuple(c for c in plan.copies if c.rel not in recent))
            kept = sum(1 for r in src.local.files if not exclude.excluded(r))
            counts = _counts(kept - len(recent), len(src.local.files) - kept + len(recent), plan)
            await upload.run_upload(self, target, src, plan, digests, counts=counts, settled=bool(settle))

    async def publish(self, target: Target, *, delete: bool, exclude: Excluder, settle: float | None = None) -> None:
        """Upload a folder as one atomic snapshot: missing objects first, the commit last.

        Readers that `download` the prefix see the previous snapshot or this one, never a mix.
        With ``settle``, nothing is published while a file changed less than ``settle`` s ago.
        """
        root = target.local
        if await anyio.to_thread.run_sync(root.is_file):
            # One object: a single PUT (or a completed multipart upload) is atomic already.
            return await self.upload(target, delete=delete, exclude=exclude, settle=settle)
        if not await anyio.to_thread.run_sync(root.is_dir):
            log.info("%s does not exist; nothing to publish to %s", root, target.url)
            return
        await publish.publish_folder(self, target, delete=delete, exclude=exclude, settle=settle)

    # ------------------------------------------------------------------ listing

    async def ls_entries(self, url: S3URL, profile: Profile | None, recursive: bool) -> list[ListEntry]:
        """The names `ls` returns, in the same order, with each object's size and last-modified time."""
        return await _gather.ls_entries(self, url, profile, recursive)


def _counts(considered: int, skipped: int, plan: Plan) -> tuple[int, int]:
    """``(unchanged, skipped)`` files for the summary line: those considered and not copied, and
    those left out (excluded, or still being written)."""
    copied = sum(1 for c in plan.copies if not c.is_dir)
    return max(0, considered - copied), skipped
