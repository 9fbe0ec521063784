"""mirror() and amirror() take the options of AsyncMirror as typed keywords, with its defaults."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import pos3


def _params(fn: object) -> list[tuple[str, object, object, object]]:
    sig = inspect.signature(fn)  # type: ignore[arg-type]
    return [(p.name, p.default, p.annotation, p.kind) for p in sig.parameters.values() if p.name != "self"]


def test_mirror_and_amirror_take_every_option_as_its_own_keyword() -> None:
    expected = _params(pos3.AsyncMirror.__init__)
    assert [p[0] for p in expected][5:] == ["cache_max_bytes", "lock_timeout", "connect_timeout", "read_timeout",
                                           "retry_mode", "max_attempts", "stall_timeout", "outage_budget", "ca_bundle",
                                           "verify"]
    for fn in (pos3.mirror, pos3.amirror):
        params = _params(fn)
        assert params == expected, fn.__name__
        assert all(p[3] is not inspect.Parameter.VAR_KEYWORD for p in params)


def test_a_misspelt_option_is_a_type_error_for_mypy(tmp_path: Path) -> None:
    pytest.importorskip("mypy")  # in the dev venv and the typecheck session; skipped in a bare test env
    script = tmp_path / "user.py"
    script.write_text("import pos3\n\npos3.mirror(cach_max_bytes=10)\npos3.amirror(lock_timout=1.0)\n")
    done = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(script)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert 'Unexpected keyword argument "cach_max_bytes"' in done.stdout, done.stdout
    assert 'Unexpected keyword argument "lock_timout"' in done.stdout, done.stdout


def test_the_package_is_marked_typed() -> None:
    # PEP 561: without py.typed, mypy in a user's project sees pos3 as Any (checked in the built
    # wheel by hand: hatch ships every file under pos3/, py.typed included).
    assert (Path(pos3.__file__).parent / "py.typed").is_file()
