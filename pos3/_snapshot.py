"""Atomic publishing of a folder: content-addressed objects, then a commit written last. Pure.

Layout below a prefix ``P/`` uploaded with ``upload(..., atomic=True)``::

    P/.pos3/objects/<xxh3-128>        immutable file contents, named by their fingerprint
    P/.pos3/commits/<seq>.json        one manifest per publish, never overwritten

A publish uploads the missing objects first and writes the next commit last, so a reader that
takes the newest commit whose objects all exist sees one complete snapshot — the previous one or
the new one, never a mix. Old commits beyond the newest `KEEP` and objects none of the kept
commits reference are garbage-collected after a publish (`garbage`), with a grace period for
objects no commit refers to: they may belong to another publisher whose commit is not written yet.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ._plan import RemoteFile

__all__ = ["GRACE", "KEEP", "Manifest", "SnapshotLayout", "garbage"]

KEEP = 2
# Seconds an object that no commit refers to is kept, by the server's clock: long enough for a
# concurrent publisher to upload a large snapshot and write its commit.
GRACE = 24 * 3600.0
FORMAT = "pos3-snapshot/1"


@dataclass(frozen=True)
class SnapshotLayout:
    """Where the parts of a snapshot live below a listing prefix (``""`` or ending in ``/``)."""

    prefix: str

    @property
    def root(self) -> str:
        return f"{self.prefix}.pos3/"

    @property
    def commits(self) -> str:
        return f"{self.root}commits/"

    @property
    def objects(self) -> str:
        return f"{self.root}objects/"

    def object_key(self, xxh3: str) -> str:
        return f"{self.objects}{xxh3}"

    def commit_key(self, seq: int) -> str:
        return f"{self.commits}{seq:012d}.json"

    def commit_seq(self, key: str) -> int | None:
        """The sequence number of a commit key, or ``None`` for anything else."""
        if not key.startswith(self.commits) or not key.endswith(".json"):
            return None
        stem = key[len(self.commits) : -len(".json")]
        return int(stem) if stem.isdigit() else None

    def owns(self, key: str) -> bool:
        """Whether a key belongs to the snapshot machinery (not to the user's files)."""
        return key.startswith(self.root)


@dataclass(frozen=True)
class Manifest:
    """One committed snapshot: relative path -> (fingerprint, size), plus empty folders."""

    seq: int
    files: Mapping[str, tuple[str, int]] = field(default_factory=dict)
    dirs: tuple[str, ...] = ()

    def same_content(self, other: Manifest | None) -> bool:
        return other is not None and dict(self.files) == dict(other.files) and self.dirs == other.dirs

    def to_json(self) -> bytes:
        body = {
            "format": FORMAT,
            "seq": self.seq,
            "files": {rel: {"xxh3": h, "size": n} for rel, (h, n) in sorted(self.files.items())},
            "dirs": sorted(self.dirs),
        }
        return json.dumps(body, indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes, where: str) -> Manifest:
        try:
            body = json.loads(data)
            if body.get("format") != FORMAT:
                raise ValueError(f"unknown format {body.get('format')!r}")
            files = {str(rel): (str(v["xxh3"]), int(v["size"])) for rel, v in body["files"].items()}
            return cls(int(body["seq"]), files, tuple(str(d) for d in body.get("dirs", ())))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"{where}: not a pos3 snapshot manifest ({exc})") from None


def newest_complete(
    layout: SnapshotLayout, manifests: Iterable[Manifest], objects: Mapping[str, RemoteFile]
) -> Manifest | None:
    """The newest manifest whose objects all exist (a half-published newer one is skipped)."""
    for manifest in sorted(manifests, key=lambda m: -m.seq):
        if all(layout.object_key(h) in objects for h, _ in manifest.files.values()):
            return manifest
    return None


def _age(modified: str, now: str) -> float | None:
    """Seconds from ``modified`` to ``now`` (ISO 8601 server times), ``None`` if either is unknown."""
    try:
        then, at = datetime.datetime.fromisoformat(modified), datetime.datetime.fromisoformat(now)
        return (at - then).total_seconds()
    except (ValueError, TypeError):
        return None


def garbage(layout: SnapshotLayout, commit_keys: Iterable[str], kept: Iterable[Manifest],
            objects: Iterable[str], *, dropped: Iterable[Manifest] = (), modified: Mapping[str, str] | None = None,
            now: str = "", grace: float = GRACE) -> list[str]:
    """Keys to delete after a publish: commits older than the kept ones, and objects no kept commit
    refers to, under the grace rule below.

    Args:
        commit_keys: Commit keys found below the layout.
        kept: The manifests kept (this publish's and the one before it).
        objects: Object keys found (listed, and uploaded by this publish).
        dropped: Manifests of commits being deleted that were read: their objects, when no kept
            commit refers to them, are collected at once (they were committed, then superseded).
        modified: Server LastModified (ISO 8601) of listed object keys.
        now: The server time of this publish's commit (ISO 8601).
        grace: Seconds an object that no read commit refers to is kept. Such an object may be
            another publisher's, uploaded for a commit not written yet: it is collected only
            when the server says it is at least ``grace`` seconds older than this commit, and
            never when either time is unknown. Two concurrent publishers therefore never remove
            each other's uncommitted objects.
    """
    kept = list(kept)
    kept_seqs = {m.seq for m in kept}
    oldest = min(kept_seqs) if kept_seqs else 0
    referenced = {layout.object_key(h) for m in kept for h, _ in m.files.values()}
    superseded = {layout.object_key(h) for m in dropped for h, _ in m.files.values()}
    ages = modified or {}
    out = [k for k in commit_keys if (s := layout.commit_seq(k)) is not None and s < oldest]
    for k in set(objects) - referenced:
        age = _age(ages.get(k, ""), now)
        if k in superseded or (age is not None and age >= grace):
            out.append(k)
    return sorted(out)
