"""The world every documentation example runs in, and the reader of fenced code blocks.

Kept apart from the test module so the convention is defined in one place:

* `extract_blocks` finds every fenced Python block of a Markdown page (also indented ones,
  inside admonitions or tabs), with its line number, and whether the line before it is the
  ``<!-- pos3: no-run -->`` marker;
* `seed` creates the buckets and objects the examples may assume;
* `run_page` executes a page's blocks in order in one namespace, top-level ``await`` allowed.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NO_RUN = "<!-- pos3: no-run -->"

_FENCE_OPEN = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\n]*)$")

# What the examples may assume exists before a page runs (bucket -> key -> bytes).
TRAIN_CSV = b"x,y\n1,2\n2,4\n3,6\n4,8\n"
TEST_CSV = b"x,y\n5,10\n6,12\n"
SEED: dict[str, dict[str, bytes]] = {
    "bucket": {
        "dataset/train.csv": TRAIN_CSV,
        "dataset/test.csv": TEST_CSV,
        "dataset/images/0.png": b"\x89PNG\r\n\x1a\n",
        "ckpt/model.pt": b"weights-v1",
    },
    "public-data": {},
    "results": {},
}


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page.

    Attributes:
        page: The Markdown file.
        line: 1-based line number of the first line of code (the line after the fence).
        language: The first word of the fence's info string (``python``, ``bash``...).
        source: The code, with the fence's indentation removed.
        run: Whether the test suite executes it (``python`` and not marked no-run).
    """

    page: Path
    line: int
    language: str
    source: str
    run: bool


def extract_blocks(page: Path) -> list[Block]:
    """Every fenced code block of ``page``, in order."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE_OPEN.match(lines[i])
        if m is None:
            i += 1
            continue
        indent, fence, info = m["indent"], m["fence"], m["info"].strip()
        language = info.split()[0].lstrip(".{").rstrip("}").lower() if info else ""
        previous = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        start = i + 1
        body: list[str] = []
        j = start
        while j < len(lines):
            stripped = lines[j].strip()
            if stripped.startswith(fence[0] * len(fence)) and set(stripped) <= {fence[0]}:
                break
            line = lines[j]
            body.append(line[len(indent):] if line.startswith(indent) else line.lstrip())
            j += 1
        blocks.append(Block(page, start + 1, language, "\n".join(body) + "\n",
                            run=language in ("python", "py") and previous != NO_RUN))
        i = j + 1
    return blocks


def seed(s3: Any) -> None:
    """Create the buckets and objects of `SEED` with a boto3 client."""
    for bucket, objects in SEED.items():
        s3.create_bucket(Bucket=bucket)
        for key, data in objects.items():
            s3.put_object(Bucket=bucket, Key=key, Body=data)


def run_page(blocks: list[Block]) -> dict[str, Any]:
    """Execute the runnable blocks in order in one namespace; return the namespace.

    A block using top-level ``await`` (or ``async with`` / ``async for``) runs as a coroutine on
    one event loop shared by the page; other blocks run as a plain script would, with no loop
    running. Line numbers in tracebacks are those of the Markdown file.
    """
    namespace: dict[str, Any] = {"__name__": "__main__"}
    with asyncio.Runner() as runner:
        for block in blocks:
            if not block.run:
                continue
            padded = "\n" * (block.line - 1) + block.source
            code = compile(padded, str(block.page), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
            if code.co_flags & inspect.CO_COROUTINE:
                runner.run(eval(code, namespace))
            else:
                exec(code, namespace)
    return namespace
