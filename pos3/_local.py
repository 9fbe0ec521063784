"""Local disk: scanning, atomic placement through a staging folder, deletes confined to a root.

Every function here blocks; the engine calls them from worker threads. No function writes or
deletes outside the root it is given: relative paths come from `_keys.relative_path` and every
parent folder is checked to resolve inside the root (a symlinked folder is not followed).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import itertools
import os
import shutil
import stat
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from ._keys import RESERVED_NAME
from ._plan import LocalFile, LocalTree

__all__ = [
    "STAGING_DIRNAME",
    "Staging",
    "check_writable",
    "delete_entry",
    "ensure_parent",
    "plain_parents",
    "replace_into",
    "scan",
    "staging_place",
    "stat_file",
]

# Staging folder name used beside a root when the cache is on another file system (a key may
# not use it: see _keys).
STAGING_DIRNAME = RESERVED_NAME


def stat_file(path: Path) -> LocalFile:
    st = os.stat(path)
    return LocalFile(st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)


def scan(root: Path) -> LocalTree:
    """Every regular file and folder below ``root`` (symlinks are skipped).

    A ``root`` that is a file gives one file with relative path ``""``; a missing root gives
    an empty tree.
    """
    try:
        st = os.lstat(root)
    except FileNotFoundError:
        return LocalTree()
    if stat.S_ISREG(st.st_mode):
        return LocalTree({"": LocalFile(st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)})
    if not stat.S_ISDIR(st.st_mode):
        return LocalTree()
    files: dict[str, LocalFile] = {}
    dirs: set[str] = set()
    stack: list[tuple[str, str]] = [(str(root), "")]
    while stack:
        path, rel = stack.pop()
        try:
            it = os.scandir(path)
        except (FileNotFoundError, NotADirectoryError):
            continue
        with it:
            for entry in it:
                if entry.name == STAGING_DIRNAME:
                    continue
                child = f"{rel}{entry.name}"
                if entry.is_dir(follow_symlinks=False):
                    dirs.add(child)
                    stack.append((entry.path, child + "/"))
                elif entry.is_file(follow_symlinks=False):
                    est = entry.stat(follow_symlinks=False)
                    files[child] = LocalFile(est.st_size, est.st_mtime_ns, est.st_ino, est.st_ctime_ns)
    return LocalTree(files, frozenset(dirs))


def _inside(root_real: str, path: str) -> bool:
    return path == root_real or path.startswith(root_real.rstrip("/") + "/")


def ensure_parent(root: Path, target: Path) -> None:
    """Create the parent folders of ``target`` below ``root``, refusing to leave ``root``.

    Raises:
        PermissionError: A parent resolves outside the root (a symlinked folder).
        NotADirectoryError / FileExistsError: A file stands where a folder is needed.
    """
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    root_real = os.path.realpath(root)
    if not _inside(root_real, os.path.realpath(parent)):
        raise PermissionError(errno.EACCES, f"{parent} resolves outside {root}; refusing to write", str(target))


def plain_parents(root: Path, target: Path) -> bool:
    """Whether every folder between ``root`` and ``target`` exists and is a real folder, not a
    symlink: then ``target``'s parent resolves inside ``root`` with no further check.

    The cheap test before a rename (one ``lstat`` per folder below ``root``, none for a file
    directly in it); when it fails, `ensure_parent` makes the folders and resolves them.
    ``target`` is ``root`` joined with a safe relative path (`_keys.relative_path`: no ``..``).
    """
    parent = target.parent
    if parent == root:
        return True
    try:
        parts = parent.relative_to(root).parts
    except ValueError:
        return False
    path = str(root)
    for part in parts:
        path = os.path.join(path, part)
        try:
            st = os.lstat(path)
        except OSError:
            return False
        if not stat.S_ISDIR(st.st_mode):
            return False
    return True


def delete_entry(root: Path, rel: str, is_dir: bool, recursive: bool = False) -> None:
    """Delete ``root/rel``: a file, an empty folder, or (``recursive``) a whole folder.

    Missing entries are fine. Nothing outside ``root`` is touched.
    """
    if not rel:
        raise PermissionError(errno.EACCES, "refusing to delete the root itself", str(root))
    target = root / rel
    root_real = os.path.realpath(root)
    if not _inside(root_real, os.path.realpath(target.parent)):
        raise PermissionError(errno.EACCES, f"{target} resolves outside {root}; refusing to delete", str(target))
    try:
        st = os.lstat(target)
    except (FileNotFoundError, NotADirectoryError):
        return
    if stat.S_ISDIR(st.st_mode):
        if recursive:
            shutil.rmtree(target)
        else:
            try:
                os.rmdir(target)
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
    else:
        os.unlink(target)


_READ_ONLY = (errno.EACCES, errno.EPERM, errno.EROFS)


def check_writable(root: Path) -> None:
    """Raise once, naming the folder, when files cannot be written below ``root``.

    Probes the nearest existing folder of ``root`` (``root`` itself, or the parent a new tree
    will be made in) by creating and removing a hidden file, which catches permissions and
    read-only mounts alike.

    Raises:
        PermissionError: The folder is read-only for this process.
    """
    folder = root if root.is_dir() else root.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        fd, name = tempfile.mkstemp(dir=folder, prefix=".pos3-probe-")
    except OSError as exc:
        if exc.errno in _READ_ONLY:
            raise PermissionError(f"{folder}: cannot write here ({os.strerror(exc.errno)}); nothing was "
                                  f"downloaded") from None
        raise
    os.close(fd)
    os.unlink(name)


def missing_top(path: Path) -> Path | None:
    """The outermost folder of ``path`` (or ``path`` itself) that does not exist yet."""
    top = None
    while not path.exists() and path != path.parent:
        top, path = path, path.parent
    return top


def prune_empty(path: Path, top: Path) -> None:
    """Remove ``path`` and its parents up to ``top`` while they are empty folders."""
    while True:
        try:
            os.rmdir(path)
        except OSError:
            return
        if path == top or path == path.parent:
            return
        path = path.parent


def staging_place(same_device: bool, probe_errno: int | None) -> str:
    """Where a root's partial files are written: ``"private"`` (the cache's staging folder) or
    ``"beside"`` (a hidden staging folder inside the root's own folder).

    Pure. A rename works only within one mount, and ``st_dev`` does not tell mounts apart: bind
    mounts (Docker and Kubernetes volumes) share the device and still refuse with ``EXDEV``. So
    the private folder is used only when the devices match *and* a probe rename succeeded.

    Args:
        same_device: ``st_dev`` of the private folder equals that of the root's folder.
        probe_errno: The errno of a probe rename from the private folder into the root's folder,
            or ``None`` when it succeeded.
    """
    if not same_device or probe_errno is not None:
        return "beside"
    return "private"


def _probe_rename(private: Path, anchor: Path) -> int | None:
    """Rename an empty file from ``private`` to a hidden folder in ``anchor``; the errno, or None."""
    probe = private / f"{uuid.uuid4().hex}.probe"
    beside = anchor / STAGING_DIRNAME
    made = not beside.exists()
    try:
        probe.touch()
        beside.mkdir(exist_ok=True)
        os.rename(probe, beside / probe.name)
        os.unlink(beside / probe.name)
        return None
    except OSError as exc:
        return exc.errno or errno.EIO
    finally:
        with contextlib.suppress(OSError):
            os.unlink(probe)
        if made:
            with contextlib.suppress(OSError):
                os.rmdir(beside)


def replace_into(tmp: Path, final: Path) -> None:
    """Rename a finished partial file onto its final name.

    When the rename crosses a mount (``EXDEV``: a bind mount that the staging decision could not
    see), the file is copied into a hidden staging folder beside the target first, so the final
    name still appears in one atomic rename, whole or not at all.
    """
    try:
        os.replace(tmp, final)
        return
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    beside = final.parent / STAGING_DIRNAME
    beside.mkdir(exist_ok=True)
    near = beside / f"{uuid.uuid4().hex}.part"
    try:
        shutil.copyfile(tmp, near)
        os.replace(near, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(near)
        with contextlib.suppress(OSError):
            os.rmdir(beside)
    os.unlink(tmp)


# Partial-file names: this process's pid, a random token drawn once (a forked child keeps it but
# has another pid) and a counter; unique without a call to the OS random source per file.
_NAME_TOKEN = uuid.uuid4().hex[:12]
_NAME_COUNT = itertools.count()


@dataclass(frozen=True)
class Staging:
    """Where partial files of one root are written before they are renamed into place.

    The folder lives outside the mirrored tree (under the cache's private folder) when a rename
    from there into the root works, so third-party code never sees a temporary name; else (another
    file system, or a bind mount of the same one) it is a hidden ``.pos3-staging`` folder beside
    the root's files, skipped by every scan. See `staging_place`.
    Leftovers of a killed process are removed by `clean` when the root is next locked.
    """

    folder: Path

    @classmethod
    def for_root(cls, root: Path, private: Path) -> Staging:
        key = hashlib.sha256(str(root).encode()).hexdigest()[:24]
        anchor = root if root.is_dir() else root.parent
        candidate = private / "staging" / key
        probe: int | None = None
        try:
            candidate.mkdir(parents=True, exist_ok=True)
            anchor.mkdir(parents=True, exist_ok=True)
            same_fs = os.stat(candidate).st_dev == os.stat(anchor).st_dev
            if same_fs:
                probe = _probe_rename(candidate, anchor)
        except OSError:
            same_fs = False
        if staging_place(same_fs, probe) == "private":
            return cls(candidate)
        return cls(anchor / STAGING_DIRNAME)

    def new_path(self) -> Path:
        """A fresh partial-file name; no I/O (the writer creates the folder when it opens the file)."""
        return self.folder / f"{os.getpid()}-{_NAME_TOKEN}-{next(_NAME_COUNT)}.part"

    def resume_path(self, key: str) -> Path:
        """The partial file of a large object, kept across runs so a download can resume.

        Its journal (which parts are complete, for which ETag) sits beside it, with ``.json``.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        return self.folder / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.resume.part"

    def clean(self, keep: frozenset[str] = frozenset()) -> int:
        """Remove every leftover partial file except resumable ones named in ``keep``.

        Returns:
            How many entries were removed.
        """
        removed = 0
        try:
            entries = list(os.scandir(self.folder))
        except FileNotFoundError:
            return 0
        for entry in entries:
            if entry.name in keep or entry.name.removesuffix(".json") + ".part" in keep:
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)
                removed += 1
            except FileNotFoundError:
                pass
        if self.folder.name == STAGING_DIRNAME:
            with contextlib.suppress(OSError):
                os.rmdir(self.folder)
        return removed

    @staticmethod
    def discard(path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
