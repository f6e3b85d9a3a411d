"""Why a client run that did not succeed ended: one line for its record's ``error``.

A run that exits non-zero is recorded with the client's own words, so every failed run in
``clients.jsonl`` says why it failed without anyone opening its output tail. The client's words
are what it saw: pip retries a 502 from the proxy silently and then says "No matching
distribution found", so the index's side of the story (refused, reset, timed out) comes from
the proxy's records (``pipstorm.engine.analysis.trace``,
``pipstorm.engine.analysis.target.failure``).
"""

from __future__ import annotations

from pipstorm.clients.process import Outcome
from pipstorm.clients.task import RunOutcome

#: Characters of the cause kept: a line, not a log.
CAUSE_CHARS = 300
# How the clients pipstorm drives start the line that says why they gave up: pip and uv
# ("ERROR: ...", "error: ..."), twine ("ERROR    HTTPError: ...").
_ERROR_PREFIXES = ("error", "fatal")
_TRACEBACK = "Traceback (most recent call last)"


def failure_cause(kind: RunOutcome, outcome: Outcome, timeout_s: float) -> str | None:
    """The cause of a run that ran but did not succeed; None for an ok run or a conflict."""
    if kind in ("ok", "conflict"):
        return None
    said = last_error_line(outcome)
    if kind == "timeout":
        return _short(f"timed out after {timeout_s:g} s" + (f"; last said: {said}" if said else ""))
    if kind == "interrupted":
        return "stopped by pipstorm before it finished (interrupted)"
    if said:
        return _short(said)
    return f"exit code {outcome.exit_code}" if outcome.exit_code is not None else "did not start"


def last_error_line(outcome: Outcome) -> str | None:
    """The last line of stderr that reads as an error, else its last line, else stdout's.

    A traceback after the error line (pip's "ERROR: Exception:" then a crash on a download
    whose 502s outlasted its retries) is summed up by its last line, the exception."""
    for text in (outcome.stderr_tail, outcome.stdout_tail):
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if not lines:
            continue
        errors = [i for i, line in enumerate(lines) if line.lower().startswith(_ERROR_PREFIXES)]
        tracebacks = [i for i, line in enumerate(lines) if line.startswith(_TRACEBACK)]
        if errors and not (tracebacks and tracebacks[-1] > errors[-1]):
            return lines[errors[-1]]
        return lines[-1]
    return None


def _short(text: str) -> str:
    return text if len(text) <= CAUSE_CHARS else text[: CAUSE_CHARS - 3] + "..."
