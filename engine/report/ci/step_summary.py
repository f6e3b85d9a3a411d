"""The Markdown summary appended to GitHub Actions' job summary (``GITHUB_STEP_SUMMARY``).

In a GitHub Actions step the runner sets ``GITHUB_STEP_SUMMARY`` to a file whose Markdown it
shows on the run's page; several steps (or several runs in one step) append to it. pipstorm
appends each run's ``report.md`` text there, without the chart images (their PNGs live in the
results folder, which the summary page cannot reach), so a failed gate says why on the page
that links the job. Nothing happens when the variable is unset (outside GitHub Actions).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

from pipstorm.engine.report.markdown import render_markdown
from pipstorm.engine.report.model import Report

ENV_VAR = "GITHUB_STEP_SUMMARY"
#: GitHub refuses a step summary over 1 MiB; a report longer than this is cut short with a note.
MAX_CHARS = 900_000


def summary_path(env: Mapping[str, str] | None = None) -> Path | None:
    """The file GitHub Actions reads the summary from, or None outside it."""
    value = (os.environ if env is None else env).get(ENV_VAR, "").strip()
    return Path(value) if value else None


def append_markdown(
    text: str, say: Callable[[str], None], env: Mapping[str, str] | None = None
) -> bool:
    """Append ``text`` to the step summary (if there is one); a write that fails is said, never
    raised: the run's verdict must not turn into a crash over a CI nicety."""
    path = summary_path(env)
    if path is None:
        return False
    if len(text) > MAX_CHARS:
        text = text[:MAX_CHARS] + "\n\n*(cut short: the whole report is in report.md)*\n"
    try:
        with path.open("a", encoding="utf-8") as out:
            out.write(text.rstrip("\n") + "\n\n")
    except OSError as exc:
        say(f"pipstorm: WARNING: {ENV_VAR} not written: {exc}")
        return False
    return True


def append_report(
    report: Report, say: Callable[[str], None], env: Mapping[str, str] | None = None
) -> bool:
    """Append one run's report (as ``report.md`` shows it, without the charts)."""
    if summary_path(env) is None:
        return False
    return append_markdown(render_markdown(report), say, env)
