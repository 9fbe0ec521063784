"""Staging decisions and the placing of finished files (no server)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from pos3._local import STAGING_DIRNAME, Staging, check_writable, replace_into, staging_place


def test_staging_is_private_only_when_a_rename_into_the_root_works() -> None:
    assert staging_place(same_device=True, probe_errno=None) == "private"
    # A bind mount: the same st_dev, and the probe rename still fails across the mount.
    assert staging_place(same_device=True, probe_errno=errno.EXDEV) == "beside"
    assert staging_place(same_device=False, probe_errno=None) == "beside"
    assert staging_place(same_device=True, probe_errno=errno.EACCES) == "beside"


def test_staging_for_a_root_on_the_same_mount_is_private_and_leaves_no_trace(tmp_path: Path) -> None:
    root = tmp_path / "data"
    staging = Staging.for_root(root, tmp_path / "cache" / ".pos3")
    assert staging.folder.parent == tmp_path / "cache" / ".pos3" / "staging"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]  # the probe and its hidden folder are gone


def test_replace_into_places_whole_files(tmp_path: Path) -> None:
    tmp, final = tmp_path / "x.part", tmp_path / "out" / "x"
    final.parent.mkdir()
    tmp.write_bytes(b"payload")
    replace_into(tmp, final)
    assert final.read_bytes() == b"payload" and not tmp.exists()
    assert not (final.parent / STAGING_DIRNAME).exists()


def test_check_writable_names_a_read_only_folder(tmp_path: Path) -> None:
    check_writable(tmp_path / "new" / "tree")  # the nearest existing folder is writable
    if os.geteuid() == 0:
        pytest.skip("root writes through permissions; the read-only mount case is an integration test")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(PermissionError, match=str(ro)):
            check_writable(ro / "data")
    finally:
        ro.chmod(0o755)


def test_place_makes_missing_folders_and_refuses_a_symlinked_folder_leading_outside(tmp_path: Path) -> None:
    from pos3._transfer.place import place

    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "inner").mkdir()
    (root / "link_in").symlink_to(root / "inner")
    (root / "link_out").symlink_to(outside)

    def part(name: str) -> Path:
        tmp = tmp_path / f"{name}.part"
        tmp.write_bytes(name.encode())
        return tmp

    assert place(part("a"), root / "a", root).size == 1  # directly in the root
    place(part("b"), root / "new" / "deep" / "b", root)  # missing folders are made
    assert (root / "new" / "deep" / "b").read_bytes() == b"b"
    place(part("c"), root / "link_in" / "c", root)  # a symlink that stays inside the root is followed
    assert (root / "inner" / "c").read_bytes() == b"c"
    with pytest.raises(PermissionError, match="resolves outside"):
        place(part("d"), root / "link_out" / "d", root)
    assert list(outside.iterdir()) == []
    (root / "taken").mkdir()
    with pytest.raises(IsADirectoryError, match="a folder stands where the file goes"):
        place(part("e"), root / "taken", root)
    assert (root / "taken").is_dir()
