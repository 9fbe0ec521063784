"""The I/O side of transfers, one module per job (see docs/architecture.md).

- `context`: what every job shares: options, clients, limits, the state store.
- `download`: streamed GETs, placing files, one download batch.
- `ranged`: parallel ranged GETs of large objects and their resume journal.
- `place`: writing bytes and renaming them into place (blocking helpers for worker threads).
- `upload`: PUT and multipart uploads, the journal of open uploads, stale-upload abort.
- `publish`: atomic publish of a folder as a snapshot, reading snapshots back, snapshot GC.

Decisions (part sizes, retry and resume rules, when a file is settled) live in `pos3._policy`.
"""
