"""Generate docs/cli.md from the ``pos3`` argument parser, so the page cannot drift from ``--help``.

    python docs/gen_cli.py            # rewrite docs/cli.md
    python docs/gen_cli.py --check    # exit 1 when docs/cli.md is stale (the test suite does this too)

The page is built from the parser's own data (descriptions, option strings, metavars, help
texts, examples), not from argparse's formatted output, so it is the same on every Python
version and terminal width.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pos3.cli import EXIT_CODES, build_parser

PAGE = Path(__file__).with_name("cli.md")

INTRO = """\
# Command line

`pip install pos3` installs the `pos3` command (`python -m pos3` runs the same thing). It is a
thin shell over `pos3.amirror()`, the engine of the Python API: the same change detection,
exclusions, profiles and cache layout, one operation per run.

```bash
pos3 ls s3://                                        # the buckets
pos3 ls s3://bucket/datasets/
d=$(pos3 download s3://bucket/datasets/mnist/)      # stdout is only the local path
pos3 download s3://bucket/datasets/mnist/ ./mnist   # into a folder of your choice
pos3 upload ./out s3://bucket/results/run-1/ --dry-run
```

Conventions shared by every command:

* **stdout carries only results**: listings, the local path (`download`, `sync`), the URL
  (`upload`), dry-run plans, or JSON with `--json`. Everything else goes to stderr.
* **Source first, destination second**, as in `aws s3 cp SRC DST`: `pos3 download URL [LOCAL]`,
  `pos3 sync URL [LOCAL]`, `pos3 upload [LOCAL] URL`. `--local PATH` says the same; an empty
  path (`--local ""`, an unset shell variable) is a usage error, never "the current folder".
* **Progress** bars (bytes, files done of total, rate, in binary units: KiB, MiB/s) appear on
  stderr only when stderr is a terminal, or with `--progress`. A one-line summary follows every
  transfer on stderr (files, bytes, time, rate, files unchanged); `-q` silences both.
  Logs go to stderr with `-v` (info), `-vv` (debug) and `-vvv` (debug of every library).
* **`--delete` is off by default** on the command line (the Python API mirrors exactly by
  default): a shell command never deletes unless asked.
* **`--dry-run`** prints one line per action with its reason and changes nothing, in the style of
  `aws s3 sync --dryrun`:

    ```text
    (dryrun) download: s3://bucket/data/a.txt to /home/me/.cache/pos3/_/bucket/data/a.txt (new)
    (dryrun) download: s3://bucket/data/b.txt to /home/me/.cache/pos3/_/bucket/data/b.txt (changed remotely)
    (dryrun) delete: /home/me/.cache/pos3/_/bucket/data/old.txt (absent from source)
    ```

    Reasons: `new`, `missing` (it was in sync before and is gone on the target side),
    `changed`, `changed remotely`, `changed locally`, `absent from source` and `replaced` (a
    file stands where a folder goes, or the reverse). A count goes to stderr.
    `pos3 sync --dry-run` plans the download that `sync` runs, which keeps local work: it adds
    `keep` lines (local work that `--delete` would otherwise remove; the upload sends it) and
    `conflict` lines (files changed locally and in S3 since the last sync: the real sync would
    stop there, changing nothing).
* **URLs**: `download`, `upload` and `sync` need an `s3://[profile@]bucket/key` URL; anything
  else is a usage error. `ls` also lists a local folder. A profile in the URL wins over `--profile`.
* **Exit codes**, the same for every command:

{exit_codes}

This page is generated from the parser by `docs/gen_cli.py`; a test fails when it drifts from `--help`.
"""

JSON_NOTES = {
    "ls": """\
With `--json`, stdout is one JSON array:
`[{"name": "s3://bucket/data/a.txt", "type": "file", "size": 5, "last_modified": "2024-05-01T12:00:00+00:00"},
{"name": "s3://bucket/data/sub", "type": "dir", "size": null, "last_modified": null}]`.
`--long` prints `DATE TIME  SIZE  NAME` (UTC), with `DIR` in place of the size for folders.
""",
    "cache ls": """\
With `--json`, stdout is one JSON array:
`[{"path": "/home/me/.cache/pos3/_/bucket/data", "bytes": 1048576, "last_used": "2024-05-01T12:00:00+00:00",
"pinned": false, "inside": null}]`, least recently used first. `bytes` is measured on disk now; a
tree downloaded inside another one names its holder in `inside` and is counted once, in the holder.
""",
    "cache prune": "",
    "cache": "",
    "transfer": """\
With `--json`, stdout is one JSON object: `{"url": ..., "local": ...}` after a transfer, and with
`--dry-run` the plan: `{"operation", "url", "local", "dry_run": true, "to_copy", "to_delete",
"total_bytes", "actions": [{"direction", "action", "src", "dst", "reason", "size"}]}`
(`action` is `copy` or `delete`, `direction` is `download` or `upload`).
""",
}


def _option_cell(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"`{action.metavar or action.dest}`"
    takes_value = action.nargs != 0
    metavar = action.metavar or action.dest.upper()
    names = [f"{o} {metavar}" if takes_value else o for o in action.option_strings]
    return ", ".join(f"`{n}`" for n in names)


def _table(actions: list[argparse.Action]) -> list[str]:
    rows = ["| Argument | Description |", "| --- | --- |"]
    for action in actions:
        if action.help == argparse.SUPPRESS:
            continue
        text = (action.help or "").replace("|", "\\|")
        rows.append(f"| {_option_cell(action)} | {text} |")
    return rows


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _commands(parser: argparse.ArgumentParser, prefix: str = "") -> list[tuple[str, argparse.ArgumentParser]]:
    """Every command, depth first: ``("ls", p)``, ..., ``("cache", p)``, ``("cache ls", p)``."""
    out: list[tuple[str, argparse.ArgumentParser]] = []
    for name, sub in _subcommands(parser).items():
        out.append((prefix + name, sub))
        out += _commands(sub, prefix + name + " ")
    return out


def render() -> str:
    """The Markdown of docs/cli.md, from the current parser."""
    parser = build_parser()
    codes = "\n".join(f"    | `{code}` | {text} |" for code, text in EXIT_CODES.items())
    out = [INTRO.replace("{exit_codes}", "    | Code | Meaning |\n    | --- | --- |\n" + codes)]
    out += ["## `pos3`", "", "```text", "pos3 --version", "pos3 COMMAND --help", "```", ""]
    if not _subcommands(parser):
        raise RuntimeError("the pos3 parser has no subcommands")
    for name, sub in _commands(parser):
        positionals = [a for a in sub._actions if not a.option_strings
                       and not isinstance(a, argparse._SubParsersAction)]
        if _subcommands(sub):
            positionals.append(argparse.Action([], "action", metavar="ACTION",
                                               help="one of: " + ", ".join(_subcommands(sub))))
        shown = [f"[{a.metavar or a.dest}]" if a.nargs == "?" else (a.metavar or a.dest) for a in positionals]
        synopsis = " ".join(["pos3", name, "[options]", *shown])
        out += [f"## `pos3 {name}`", "", sub.description or "", "", "```text", synopsis, "```", ""]
        own = [a for a in sub._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]
        groups = {g.title: g._group_actions for g in sub._action_groups}
        shared = {id(a) for title, acts in groups.items() if title in ("common options", "transfer options")
                  for a in acts}
        out += _table(positionals + [a for a in own if id(a) not in shared])
        out.append("")
        for title in ("transfer options", "common options"):
            acts = [a for a in groups.get(title, []) if a.help != argparse.SUPPRESS]
            if acts:
                out += [f"**{title.capitalize()}**", "", *_table(acts), ""]
        note = JSON_NOTES.get(name, JSON_NOTES["transfer"])
        if note:
            out.append(note)
        if sub.epilog:
            out += ["```text", sub.epilog.rstrip(), "```", ""]
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Generate or check docs/cli.md.")
    ap.add_argument("--check", action="store_true", help="fail when docs/cli.md differs from the parser")
    args = ap.parse_args(argv)
    text = render()
    if args.check:
        current = PAGE.read_text(encoding="utf-8") if PAGE.exists() else ""
        if current != text:
            print(f"{PAGE} is stale; run: python docs/gen_cli.py", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
