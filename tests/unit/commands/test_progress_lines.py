"""Progress lines: a bar on a terminal, the plain lines anywhere else."""

from __future__ import annotations

import io

from resilient_etl.commands.progress import progress_lines


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_piped_progress_is_the_lines_alone() -> None:
    out = io.StringIO()
    with progress_lines("drills", total=2, stream=out) as report:
        report("[1/2] drill a: PASS", done=1)
        report("[2/2] drill b: PASS", done=2)
    assert out.getvalue() == "[1/2] drill a: PASS\n[2/2] drill b: PASS\n"


def test_a_terminal_gets_the_lines_above_a_bar_with_done_of_total() -> None:
    out = _Terminal()
    with progress_lines("drills", total=4, stream=out) as report:
        report("[1/4] drill a: PASS", done=1)
        report("[2/4] drill b: FAIL", done=2)
    text = out.getvalue()
    assert "[1/4] drill a: PASS" in text and "[2/4] drill b: FAIL" in text
    assert "━" in text and "2/4" in text and "\x1b[" in text  # a drawn bar, on a terminal
