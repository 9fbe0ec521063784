"""Every Python example in the documentation runs here, against the moto server, so the docs cannot rot.

The convention (docs writers rely on exactly this):

* Every fenced ```` ```python ```` block of ``docs/*.md`` and of ``README.md`` is executed. The
  blocks of one page run in order, in one shared namespace (``__name__ == "__main__"``), so a
  later block may use names an earlier one defined.
* Top-level ``await`` (and ``async with`` / ``async for``) is allowed: such a block is compiled
  with ``ast.PyCF_ALLOW_TOP_LEVEL_AWAIT`` and run on an asyncio event loop shared by the page.
  Blocks without it run like a plain script, with no event loop running.
* A block whose preceding line is ``<!-- pos3: no-run -->`` is skipped (for a remote endpoint
  that cannot exist here, say). Use it sparingly.
* Each page runs in a fresh temporary working directory, with ``POS3_CACHE_ROOT`` set to a
  fresh temporary folder and the ``AWS_*`` environment pointing at the moto server (dummy
  credentials, ``AWS_ENDPOINT_URL``, region ``us-east-1``). Environment changes a page makes
  are undone after it.
* Before each page runs, bucket ``bucket`` holds ``dataset/train.csv`` and ``dataset/test.csv``
  (CSV with header ``x,y`` and a few integer rows), ``dataset/images/0.png`` (a few bytes) and
  ``ckpt/model.pt`` (a few bytes); buckets ``public-data`` and ``results`` exist, empty. Nothing
  else exists (see `tests.docs_fixtures.SEED`).
* Shell blocks (```` ```bash ````) are not executed; the CLI page is checked against ``--help``
  by the CLI tests.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.docs_fixtures import NO_RUN, SEED, TRAIN_CSV, extract_blocks, run_page, seed

ROOT = Path(__file__).resolve().parents[1]
PAGES = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
RUNNABLE = [p for p in PAGES if any(b.run for b in extract_blocks(p))]


@pytest.fixture
def docs_world(server: Any, s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Seeded buckets, a fresh working directory and cache root; the environment restored after."""
    seed(s3)
    work = tmp_path / "work"
    work.mkdir()
    saved = dict(os.environ)
    monkeypatch.chdir(work)
    os.environ["POS3_CACHE_ROOT"] = str(tmp_path / "cache")
    try:
        yield tmp_path / "cache"
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.mark.parametrize("page", RUNNABLE, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_page_examples_run(page: Path, docs_world: Path) -> None:
    run_page(extract_blocks(page))


def test_every_page_is_checked() -> None:
    """The pages this suite guards are the ones the site is built from (a sanity check on the glob)."""
    names = {p.name for p in PAGES}
    assert {"index.md", "getting-started.md", "concepts.md", "async.md", "README.md"} <= names


def test_extract_blocks_reads_the_convention(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n"
        "```python\n"
        "a = 1\n"
        "```\n"
        "\n"
        f"{NO_RUN}\n"
        "```python\n"
        "raise SystemExit('never')\n"
        "```\n"
        "```bash\n"
        "pos3 ls s3://bucket\n"
        "```\n"
        "!!! note\n"
        "    ```python\n"
        "    if a:\n"
        "        b = a + 1\n"
        "    ```\n",
        encoding="utf-8",
    )
    blocks = extract_blocks(page)
    assert [(b.language, b.run, b.line) for b in blocks] == [
        ("python", True, 3), ("python", False, 8), ("bash", False, 11), ("python", True, 15)
    ]
    assert blocks[3].source == "if a:\n    b = a + 1\n"
    namespace = run_page(blocks)
    assert namespace["b"] == 2


def test_top_level_await_shares_one_namespace(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "```python\nimport asyncio\nasync def f():\n    return 41\n```\n"
        "```python\nx = await f()\n```\n"
        "```python\ny = x + 1\n```\n",
        encoding="utf-8",
    )
    assert run_page(extract_blocks(page))["y"] == 42


def test_errors_point_at_the_markdown_line(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("text\n\n```python\nok = 1\nraise ValueError('boom')\n```\n", encoding="utf-8")
    with pytest.raises(ValueError, match="boom") as info:
        run_page(extract_blocks(page))
    frame = info.traceback[-1]
    assert (Path(frame.path).name, frame.lineno + 1) == ("page.md", 5)


def test_the_seeded_world(docs_world: Path, s3: Any) -> None:
    """What the convention promises is what the fixture creates."""
    for bucket, objects in SEED.items():
        listed = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
        assert sorted(o["Key"] for o in listed) == sorted(objects)
    assert s3.get_object(Bucket="bucket", Key="dataset/train.csv")["Body"].read() == TRAIN_CSV
    assert os.environ["POS3_CACHE_ROOT"] == str(docs_world)
    assert Path.cwd().name == "work"


def _documented_args(doc: str) -> set[str]:
    """Names listed in the ``Args:`` section of a Google-style docstring."""
    names: set[str] = set()
    lines = doc.splitlines()
    if "Args:" not in [line.strip() for line in lines]:
        return names
    start = [line.strip() for line in lines].index("Args:")
    indent: int | None = None
    for line in lines[start + 1:]:
        if not line.strip():
            continue
        width = len(line) - len(line.lstrip())
        if indent is None:
            indent = width
        if width < indent:
            break
        if width == indent and ":" in line:
            names.add(line.strip().split(":", 1)[0].lstrip("*"))
    return names


def _public_callables() -> list[tuple[str, Any]]:
    import inspect

    import pos3

    out: list[tuple[str, Any]] = []
    for name in pos3.__all__:
        obj = getattr(pos3, name)
        if inspect.isfunction(obj):
            out.append((f"pos3.{name}", obj))
    for name, member in vars(pos3.AsyncMirror).items():
        if not name.startswith("_") and inspect.isfunction(member) and member.__doc__:
            out.append((f"pos3.AsyncMirror.{name}", member))
    return out


@pytest.mark.parametrize(("name", "fn"), _public_callables(), ids=lambda v: v if isinstance(v, str) else "")
def test_public_functions_document_every_argument(name: str, fn: Any) -> None:
    """The API reference is generated from docstrings: each public function documents what it takes."""
    import inspect

    doc = inspect.getdoc(fn) or ""
    assert doc and doc.splitlines()[0].strip(), f"{name}: no one-line summary"
    params = [p for p in inspect.signature(fn).parameters if p not in ("self", "cls")]
    missing = set(params) - _documented_args(doc)
    assert not missing, f"{name}: Args section does not describe {sorted(missing)}"
