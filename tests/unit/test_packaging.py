"""What the wheel promises: an MIT LICENSE file shipped with it, and honest classifiers."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_license_file_exists_and_is_shipped() -> None:
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License") and "Copyright (c) 2026 Positronic Team" in text
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]


def test_classifiers_claim_asyncio_not_anyio() -> None:
    # pos3 runs on asyncio only (aiobotocore); under trio it refuses with AsyncioRequiredError.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert "Framework :: AsyncIO" in project["classifiers"]
    assert "Framework :: AnyIO" not in project["classifiers"]
