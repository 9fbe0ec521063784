"""What the ``pos3`` command prints: exit codes, results, dry-run plans, listings and failures.

Split from `pos3.cli` to keep each module under ~450 lines; `pos3.cli` re-exports the exit codes.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._cache import CacheEntry
from ._engine import ListEntry
from ._errors import TransferError, describe
from ._plan import PlannedAction, TransferPlan
from ._progress import human_bytes

log = logging.getLogger("pos3")

if TYPE_CHECKING:
    import argparse



def _cache_json(e: CacheEntry) -> dict[str, Any]:
    return {"path": str(e.path), "bytes": e.bytes, "last_used": _iso(e.last_used), "pinned": e.pinned,
            "inside": str(e.outer) if e.outer is not None else None}


def _iso(stamp: float) -> str:
    return datetime.datetime.fromtimestamp(stamp, tz=datetime.UTC).isoformat(timespec="seconds")


def _report_failures(exc: TransferError) -> None:
    count = len(exc.failures)
    noun = "object" if count == 1 else "objects"
    print(f"pos3: error: {exc.operation} failed for {count} {noun}:", file=sys.stderr)
    for failure in exc.failures:
        print(f"  {describe(failure)}", file=sys.stderr)


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2))


def _print_result(args: argparse.Namespace, local: Path, show: str | None = None) -> None:
    if args.json:
        _print_json({"url": args.url, "local": str(local)})
    else:
        print(show if show is not None else local)


@dataclass(frozen=True)
class _Step:
    direction: str
    action: PlannedAction

    @property
    def line(self) -> str:
        a = self.action
        if a.action == "copy":
            return f"(dryrun) {self.direction}: {a.src} to {a.dst} ({a.reason})"
        return f"(dryrun) {a.action}: {a.dst} ({a.reason})"

    def as_json(self) -> dict[str, Any]:
        a = self.action
        return {"direction": self.direction, "action": a.action, "src": a.src, "dst": a.dst, "reason": a.reason,
                "size": a.size}


def _print_plan(args: argparse.Namespace, local: Path, plans: Sequence[tuple[str, TransferPlan]]) -> None:
    steps = [_Step(direction, a) for direction, plan in plans for a in plan.actions]
    copies = sum(1 for s in steps if s.action.action == "copy")
    deletes = sum(1 for s in steps if s.action.action == "delete")
    conflicts = sum(1 for s in steps if s.action.action == "conflict")
    total = sum(plan.total_bytes for _, plan in plans)
    if args.json:
        _print_json({
            "operation": args.command, "url": args.url, "local": str(local), "dry_run": True,
            "to_copy": copies, "to_delete": deletes, "conflicts": conflicts, "total_bytes": total,
            "actions": [s.as_json() for s in steps],
        })
    else:
        for s in steps:
            print(s.line)
    if not args.quiet:
        stop = f", {conflicts} conflicts (the sync would stop, changing nothing)" if conflicts else ""
        print(f"(dryrun) {copies} to copy ({human_bytes(total)}), {deletes} to delete{stop}; nothing was changed",
              file=sys.stderr)


def _entry_json(e: ListEntry) -> dict[str, Any]:
    return {"name": e.name, "type": "dir" if e.is_dir else "file", "size": e.size,
            "last_modified": e.last_modified or None}


def _entry_line(e: ListEntry) -> str:
    if e.is_dir:
        return f"{'':19}  {'DIR':>12}  {e.name}"
    return f"{_short_time(e.last_modified):19}  {e.size:>12}  {e.name}"


def _short_time(stamp: str) -> str:
    """``2024-05-01 12:00:00`` (UTC) from an ISO 8601 time; the input unchanged if unparsable."""
    try:
        when = datetime.datetime.fromisoformat(stamp)
    except ValueError:
        return stamp
    if when.tzinfo is not None:
        when = when.astimezone(datetime.UTC)
    return when.strftime("%Y-%m-%d %H:%M:%S")


def _setup_logging(verbose: int, quiet: bool) -> None:
    for old in [h for h in log.handlers if getattr(h, "_pos3_cli", False)]:  # main() may run twice in a process
        log.removeHandler(old)
    handler = logging.StreamHandler(sys.stderr)
    handler._pos3_cli = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    if quiet:
        verbose = 0
    if verbose >= 3:
        logging.basicConfig(level=logging.DEBUG, handlers=[handler])
        return
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    log.setLevel(level)
    log.addHandler(handler)
    log.propagate = False


def _unwrap(exc: BaseException) -> BaseException:
    """The one meaningful exception inside (nested) exception groups, else the group itself."""
    while isinstance(exc, BaseExceptionGroup):
        inner = [e for e in exc.exceptions if not _is_cancellation(e)] or list(exc.exceptions)
        if len(inner) != 1:
            interrupts = [e for e in inner if isinstance(e, KeyboardInterrupt)]
            return interrupts[0] if interrupts else exc
        exc = inner[0]
    return exc


def _is_cancellation(exc: BaseException) -> bool:
    return isinstance(exc, asyncio.CancelledError)  # anyio.run uses the asyncio backend
