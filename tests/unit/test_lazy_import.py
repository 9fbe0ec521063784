"""``import pos3`` and the CLI's start-up do not import aiobotocore: it loads when a request is made.

Each check runs in a fresh interpreter and looks at ``sys.modules``; nothing is timed.
"""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("aiobotocore", "botocore", "aiohttp")


def _loaded_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))"
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    return set(res.stdout.split())


def test_import_pos3_does_not_import_aiobotocore() -> None:
    assert _loaded_after("import pos3") == set()


def test_cli_help_and_version_do_not_import_aiobotocore() -> None:
    code = (
        "import contextlib, io\n"
        "from pos3 import cli\n"
        "for argv in (['--help'], ['--version'], ['download', '--help']):\n"
        "    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "        cli.main(argv)\n"
    )
    assert _loaded_after(code) == set()
