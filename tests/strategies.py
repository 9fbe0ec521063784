"""Hypothesis strategies and a tiny in-memory world for the pure modules' property tests.

The world is deliberately small (a few segment names, shallow trees, contents of one to three
characters) so that collisions the planner must handle -- a file where a folder goes, equal
sizes with different contents, stale records -- turn up in almost every run.

Model of the truth the planner relies on:

* a file's content is a short string; its ETag is a function of the content (`etag`), so an
  unchanged ETag means unchanged remote content;
* a record remembers the content last seen in sync; its ``xxh3`` is that content, its ``etag``
  is `etag` of that content;
* a local file whose (size, ``mtime_ns``) equal its record's has the record's content (that is
  the promise ``mtime`` makes; a ``touch`` changes ``mtime_ns`` and keeps the content).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import strategies as st

from pos3._plan import LocalFile, LocalTree, Record, RemoteFile, RemoteTree, ancestors

# Segment names: "x.tmp" and "c" are what the exclude patterns below aim at.
SEGMENTS = ("a", "b", "c", "x.tmp")
CONTENTS = ("", "x", "y", "xy", "yx", "xyz")
EXCLUDES: tuple[tuple[str, ...], ...] = (
    (),
    ("*.tmp",),
    ("/a",),
    ("b/c",),
    ("**/c",),
    ("a/*",),
    ("*.tmp", "/b"),
)
PREFIXES = ("", "p/", "deep/er/")


SETTLED = 10**10  # a record taken at 10 s: every mtime of the model (a few µs) is safely older


def etag(content: str) -> str:
    """The ETag of an object holding ``content`` (injective, like a real MD5 ETag)."""
    return f'"etag-{content}"'


@dataclass
class LFile:
    """A local file of the model: content and what ``os.stat`` would say."""

    content: str
    mtime_ns: int
    inode: int

    @property
    def stat(self) -> LocalFile:
        return LocalFile(len(self.content), self.mtime_ns, self.inode)


@dataclass
class LocalWorld:
    """A local folder: files by relative path, and every folder below the root."""

    files: dict[str, LFile] = field(default_factory=dict)
    dirs: set[str] = field(default_factory=set)

    def tree(self) -> LocalTree:
        return LocalTree({r: f.stat for r, f in self.files.items()}, frozenset(self.dirs))

    def check(self) -> None:
        """The model is a real tree: parents are folders, nothing is both a file and a folder."""
        assert not set(self.files) & self.dirs
        for rel in list(self.files) + list(self.dirs):
            for a in ancestors(rel):
                assert a in self.dirs, f"{rel!r} has no parent folder {a!r}"


@dataclass
class RemoteWorld:
    """A bucket below a prefix: file contents by relative path, and directory markers."""

    files: dict[str, str] = field(default_factory=dict)
    markers: set[str] = field(default_factory=set)

    def tree(self, prefix: str) -> RemoteTree:
        objs = {r: RemoteFile(prefix + r, len(c), etag(c)) for r, c in self.files.items()}
        return RemoteTree(objs, frozenset(self.markers))

    def dirs(self) -> set[str]:
        """The folders a download of this listing makes: markers and every parent."""
        out = set(self.markers)
        for rel in list(self.files) + list(self.markers):
            out.update(ancestors(rel))
        return out


rel_paths = st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=3).map("/".join)
contents = st.sampled_from(CONTENTS)


def _tree_shape(paths: dict[str, bool]) -> tuple[set[str], set[str]]:
    """Files and folders from ``path -> is_file``: a path with anything below it is a folder."""
    every = set(paths)
    below = {a for p in every for a in ancestors(p)}
    files = {p for p, is_file in paths.items() if is_file and p not in below}
    dirs = below | {p for p in every if p not in files}
    return files, dirs


@st.composite
def remote_worlds(draw: st.DrawFn) -> RemoteWorld:
    """A valid listing: no key is both a file and the parent of another key."""
    shape = draw(st.dictionaries(rel_paths, st.booleans(), max_size=7))
    files, dirs = _tree_shape(shape)
    world = RemoteWorld({f: draw(contents) for f in sorted(files)})
    # Markers: some of the folders (those with and without files below them).
    world.markers = {d for d in sorted(dirs) if draw(st.booleans())}
    return world


@st.composite
def local_worlds(draw: st.DrawFn, related: RemoteWorld | None = None) -> LocalWorld:
    """A local tree; with ``related``, it often shares paths and contents with that listing."""
    shape = draw(st.dictionaries(rel_paths, st.booleans(), max_size=7))
    if related is not None:
        for rel in related.files:
            how = draw(st.integers(0, 5))
            if how == 1:  # a folder where the remote file goes, maybe holding excluded files
                shape[rel + "/" + draw(st.sampled_from(SEGMENTS))] = True
            elif how > 1:
                shape[rel] = True
        for rel in related.dirs():
            if draw(st.integers(0, 7)) == 0:  # a file where a remote folder goes
                shape = {p: f for p, f in shape.items() if not p.startswith(rel + "/")}
                shape[rel] = True
    files, dirs = _tree_shape(shape)
    world = LocalWorld()
    for i, rel in enumerate(sorted(files)):
        if related is not None and rel in related.files and draw(st.booleans()):
            content = related.files[rel]
        else:
            content = draw(contents)
        world.files[rel] = LFile(content, 1_000 + draw(st.integers(0, 2)), 100 + i)
    world.dirs = dirs
    world.check()
    return world


@st.composite
def records_for(draw: st.DrawFn, prefix: str, local: LocalWorld, remote: RemoteWorld) -> dict[str, Record]:
    """Records that tell the truth as the model defines it, some stale, some for other keys."""
    records: dict[str, Record] = {}
    for rel in sorted(set(local.files) | set(remote.files)):
        kind = draw(st.sampled_from(("none", "same", "touched", "moved", "stale", "other key", "racy")))
        if kind == "none":
            continue
        lf = local.files.get(rel)
        synced = draw(contents)
        if rel in remote.files and draw(st.booleans()):
            synced = remote.files[rel]  # in sync with the remote object when recorded
        mtime, inode = 7, 7
        # A racy record was taken within the timestamp granularity of the file's mtime: a
        # rewrite since then may have kept the stat (same size, mtime, inode), content differs.
        taken = mtime if kind == "racy" else SETTLED
        if lf is not None:
            mtime, inode = lf.mtime_ns, lf.inode
            if kind == "racy":
                taken = lf.mtime_ns + 1
                synced = synced if len(synced) == len(lf.content) else lf.content
            if kind == "same":
                synced = lf.content
            elif kind == "touched":
                mtime = lf.mtime_ns + 10  # the file was touched (or rewritten) since
                synced = lf.content if draw(st.booleans()) else synced
            elif kind == "moved":
                mtime, inode = lf.mtime_ns + 20, lf.inode + 1000
            if (len(synced), mtime, inode) == (len(lf.content), lf.mtime_ns, lf.inode) and kind != "racy":
                synced = lf.content  # same stat, settled record: the content is the recorded one
        elif kind == "same" and rel in remote.files:
            synced = remote.files[rel]
        key = prefix + rel if kind != "other key" else "elsewhere/" + rel
        records[rel] = Record(key, etag(synced), len(synced), len(synced), mtime, inode, synced,
                              recorded_ns=taken)
    return records
