"""Reading access logs: local files and folders (plain or gzipped) and ``s3://bucket/prefix``.

ALB writes its logs to S3 as gzipped files every 5 minutes; nginx and gunicorn rotate theirs
and gzip the old ones. Both are read the same way: every file under the sources, gzip told by
its magic bytes, each line parsed on its own. A line that parses as neither format is counted,
and the first such line kept (redacted, shortened) for the one warning the run prints: a log
with a few torn lines is still replayed, and the report says how many were skipped.
"""

from __future__ import annotations

import gzip
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from pipstorm.clients.process import redact
from pipstorm.engine.errors import UsageError
from pipstorm.engine.run.replay.logline import BadLine, LoggedRequest, parse_line

_GZIP_MAGIC = b"\x1f\x8b"
#: How much of an unreadable line the warning quotes.
QUOTE_CHARS = 160

#: Reads every line of the objects under ``s3://bucket/prefix`` (``pipstorm.infra.aws``).
S3Reader = Callable[[str], Iterator[str]]


class LogSourceError(UsageError):
    """A log source cannot be read (missing file, no S3 access); one line."""


@dataclass
class LogRead:
    """What the sources held: the requests, how many lines, and the unreadable ones."""

    requests: list[LoggedRequest] = field(default_factory=list)
    lines: int = 0
    unreadable: int = 0
    example: str | None = None  # the first unreadable line, redacted and shortened
    why: str | None = None  # why it was unreadable
    files: int = 0
    outside: int = 0  # requests outside the window: counted, not kept
    keep: Callable[[float], bool] = lambda _: True  # the window, on a request's arrival

    def add(self, lines: Iterable[str]) -> None:
        """Parse ``lines`` into this read: only requests in the window are kept (a day of ALB
        logs is millions of lines; the window of an incident a few thousand)."""
        self.files += 1
        for line in lines:
            self.lines += 1
            try:
                request = parse_line(line)
            except BadLine as exc:
                self.unreadable += 1
                if self.example is None:
                    self.example = redact(line.strip())[:QUOTE_CHARS]
                    self.why = str(exc)
                continue
            if request is None:
                continue
            if not self.keep(request.time):
                self.outside += 1
                continue
            # One string per distinct agent and address, however many requests share it.
            self.requests.append(
                replace(
                    request,
                    user_agent=sys.intern(request.user_agent),
                    client=sys.intern(request.client),
                )
            )

    def warning(self) -> str | None:
        """One line about the unreadable lines, quoting the first; None if there were none."""
        if not self.unreadable:
            return None
        return (
            f"{self.unreadable} of {self.lines} log lines were unreadable and skipped "
            f"({self.why}), e.g. {self.example!r}"
        )


def read_logs(
    sources: Sequence[str],
    *,
    s3: S3Reader | None = None,
    keep: Callable[[float], bool] | None = None,
) -> LogRead:
    """Every request the sources log whose arrival ``keep`` accepts (default: all). ``s3``
    reads ``s3://`` sources (the CLI passes ``pipstorm.infra.aws.s3_logs``'s reader with its
    role); LogSourceError for a source that cannot be read at all."""
    read = LogRead() if keep is None else LogRead(keep=keep)
    for source in sources:
        if source.startswith("s3://"):
            if s3 is None:
                raise LogSourceError(f"{source}: reading from S3 is not available here")
            read.add(s3(source))
            continue
        path = Path(source)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
            if not files:
                raise LogSourceError(f"log folder {path} holds no files")
        elif path.is_file():
            files = [path]
        else:
            raise LogSourceError(f"log {source}: no such file or folder")
        for file in files:
            read.add(_file_lines(file))
    return read


def _file_lines(path: Path) -> Iterator[str]:
    try:
        with path.open("rb") as raw:
            gzipped = raw.read(2) == _GZIP_MAGIC
            raw.seek(0)
            if gzipped:
                with gzip.GzipFile(fileobj=raw) as unpacked:
                    yield from _decoded(unpacked)
            else:
                yield from _decoded(raw)
    except (OSError, EOFError) as exc:  # EOFError: a gzip file cut short
        raise LogSourceError(f"log {path}: {exc}") from None


def _decoded(stream: Iterable[bytes]) -> Iterator[str]:
    """Lines of a byte stream as text; bytes that are not UTF-8 replaced, not fatal."""
    for raw in stream:
        yield raw.decode("utf-8", errors="replace")
