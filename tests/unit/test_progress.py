"""Progress display rules: binary units, the summary line, and no bars off a terminal."""

from __future__ import annotations

import io

from pos3._progress import Progress, cli_mode, human_bytes, human_rate, summary_line


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_binary_units() -> None:
    assert human_bytes(0) == "0 B"
    assert human_bytes(1023) == "1023 B"
    assert human_bytes(1024) == "1.00 KiB"
    assert human_bytes(1536) == "1.50 KiB"
    assert human_bytes(115 << 20) == "115.0 MiB"
    assert human_bytes(3 << 30) == "3.00 GiB"
    assert human_rate(10 << 20, 2.0) == "5.00 MiB/s"
    assert human_rate(5, 0) == "0 B/s"


def test_summary_line_names_files_bytes_time_rate_and_unchanged() -> None:
    line = summary_line("download s3://b/ds/", 3, 3 << 20, 1.5, unchanged=40, skipped=2)
    assert line == "download s3://b/ds/: 3 files, 3.00 MiB in 1.5 s (2.00 MiB/s); 40 unchanged, 2 skipped"
    assert summary_line("upload s3://b/x", 1, 0, 0.01) == "upload s3://b/x: 1 file, 0 B in 0.0 s"


def _run(progress: Progress, total: int, files: int) -> None:
    with progress.bar("download s3://b/ds", total, files=files, unchanged=1) as bar:
        for _ in range(files):
            bar.update(total // files)
            bar.file_done()


def test_no_bars_and_no_summary_when_stderr_is_not_a_terminal() -> None:
    piped = io.StringIO()
    _run(Progress(True, piped), 4096, 2)
    assert piped.getvalue() == ""


def test_a_terminal_gets_a_bar_with_files_and_a_summary() -> None:
    tty = _Terminal()
    _run(Progress(True, tty), 4096, 2)
    out = tty.getvalue()
    assert "100%" in out and "4.00 KiB/4.00 KiB" in out and "2/2 files" in out
    assert out.rstrip().endswith("; 1 unchanged")
    assert "download s3://b/ds: 2 files, 4.00 KiB in " in out


def test_disabled_is_silent_even_on_a_terminal() -> None:
    tty = _Terminal()
    _run(Progress(False, tty), 4096, 2)
    assert tty.getvalue() == ""


def test_the_command_line_asks_for_the_summary_without_a_terminal() -> None:
    piped = io.StringIO()
    with cli_mode(force_bars=False, summary=True):
        progress = Progress(True, piped)
    _run(progress, 4096, 2)
    assert piped.getvalue().count("\n") == 1 and "2 files, 4.00 KiB" in piped.getvalue()
    forced = io.StringIO()
    with cli_mode(force_bars=True, summary=True):
        progress = Progress(True, forced)
    _run(progress, 4096, 2)
    assert "100%" in forced.getvalue()
