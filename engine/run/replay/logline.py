"""One access-log line as a logged request: AWS ALB and the nginx/gunicorn "combined" format.

Both formats are read line by line into the same record, ``LoggedRequest``: when the request
arrived (ALB's ``request_creation_time``; for combined, ``$time_local`` less ``$request_time``
when the format carries it), who sent it (address and user agent: what grouping keys on), what
was asked (method and path, never the query or a ``user:password@``: a logged URL can hold a
credential, and the report must not), the status and, where the log has it, the index's
latency (ALB ``target_processing_time``, nginx ``$request_time``).

Quoted fields may hold quotes: ALB and nginx escape them (``\\"``, ``\\x22``), gunicorn does not
(pip's user agent is JSON: ``pip/25.3 {"ci":null,...}``). So a quoted field ends at a quote
that is not escaped and is followed by a space or the end of the line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import unquote, urlsplit

#: ALB's ``type`` field, the first of every line (its documented values).
ALB_TYPES = frozenset({"http", "https", "h2", "grpcs", "ws", "wss"})
_ESCAPE_RE = re.compile(r"\\(x[0-9a-fA-F]{2}|.)")
_COMBINED_TIME = "%d/%b/%Y:%H:%M:%S %z"


class BadLine(ValueError):
    """A line that is neither format, or a field that does not parse; the message says which."""


@dataclass(frozen=True)
class LoggedRequest:
    """One request as the index's access log saw it. ``time`` is its arrival (epoch seconds)."""

    time: float
    client: str  # the address, without its port
    user_agent: str
    method: str
    path: str  # path only: no scheme, host, query or userinfo
    status: int | None
    latency_ms: float | None = None  # the index's time, where the log has it
    bytes_sent: int | None = None
    #: When the line was written, where that orders a client's requests better than ``time``:
    #: combined format's whole-second ``$time_local`` (less ``$request_time``) can put a
    #: client's next request before its last one; the order lines were written in cannot.
    written: float | None = None

    @property
    def order(self) -> float:
        """What a client's requests are sorted by (a stable sort keeps same-second lines in
        the log's order)."""
        return self.time if self.written is None else self.written


def parse_line(line: str) -> LoggedRequest | None:
    """The request a line logs, None for a blank or ``#`` comment line; BadLine if neither
    an ALB nor a combined-format line."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    fields = split_fields(text)
    if len(fields) > 1 and fields[0] in ALB_TYPES and fields[1][:1].isdigit():
        return parse_alb(fields)
    return parse_combined(fields)


def split_fields(text: str) -> list[str]:
    """Space-separated fields; ``"..."`` one field, unescaped; ``[...]`` one field (a
    combined-format time holds a space)."""
    fields: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text[i] == " ":
            i += 1
            continue
        if text[i] == '"':
            j = i + 1
            while j < n:
                if text[j] == "\\" and j + 1 < n:
                    j += 2
                    continue
                if text[j] == '"' and (j + 1 == n or text[j + 1] == " "):
                    break
                j += 1
            if j >= n:
                raise BadLine("a quoted field is not closed")
            fields.append(_unescape(text[i + 1 : j]))
            i = j + 1
        elif text[i] == "[":
            j = text.find("]", i)
            if j < 0:
                raise BadLine("a [time] field is not closed")
            fields.append(text[i + 1 : j])
            i = j + 1
        else:
            j = text.find(" ", i)
            j = n if j < 0 else j
            fields.append(text[i:j])
            i = j
    return fields


def _unescape(text: str) -> str:
    def one(match: re.Match[str]) -> str:
        code = match.group(1)
        return chr(int(code[1:], 16)) if len(code) == 3 and code[0] == "x" else code

    return _ESCAPE_RE.sub(one, text)


def parse_alb(fields: list[str]) -> LoggedRequest:
    """An ALB access-log line, split, in AWS's documented field order: type time elb
    client:port target:port request_processing_time target_processing_time
    response_processing_time elb_status_code target_status_code received_bytes sent_bytes
    "request" "user_agent" ssl_cipher ssl_protocol target_group_arn "trace_id" "domain_name"
    "chosen_cert_arn" matched_rule_priority request_creation_time ... (later fields unused)."""
    if len(fields) < 14:
        raise BadLine(f"an ALB line has at least 14 fields, this one {len(fields)}")
    # request_creation_time (field 22) is the arrival; lines written before it existed carry
    # only ``time`` (when the response was sent), less the processing times.
    if len(fields) > 21 and fields[21][:1].isdigit():
        arrival = _iso_time(fields[21])
    else:
        spent = sum(max(0.0, _float(f) or 0.0) for f in fields[5:8])
        arrival = _iso_time(fields[1]) - spent
    target_s = _float(fields[6])
    method, path = _request(fields[12])
    return LoggedRequest(
        time=arrival,
        client=_address(fields[3]),
        user_agent=fields[13],
        method=method,
        path=path,
        status=_status(fields[8]),
        latency_ms=target_s * 1000.0 if target_s is not None and target_s >= 0 else None,
        bytes_sent=_int(fields[11]),
    )


def parse_combined(fields: list[str]) -> LoggedRequest:
    """``$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent
    "$http_referer" "$http_user_agent"``, optionally followed by ``$request_time`` (seconds).
    ``$time_local`` is written when the response is done: with ``$request_time`` the arrival is
    that less the request's time, without it the logged time."""
    if len(fields) < 9:
        raise BadLine(f"neither an ALB line nor combined format ({len(fields)} fields)")
    try:
        logged = datetime.strptime(fields[3], _COMBINED_TIME).timestamp()
    except ValueError:
        raise BadLine(f"time {fields[3]!r} is not like 06/Dec/2026:05:13:43 +0000") from None
    spent = _float(fields[9]) if len(fields) > 9 else None
    method, path = _request(fields[4])
    return LoggedRequest(
        time=logged - (spent or 0.0),
        client=fields[0],
        user_agent=fields[8],
        method=method,
        path=path,
        status=_status(fields[5]),
        latency_ms=spent * 1000.0 if spent is not None else None,
        bytes_sent=_int(fields[6]),
        written=logged,
    )


def _request(text: str) -> tuple[str, str]:
    """``GET https://host:443/simple/x/?q HTTP/1.1`` -> (GET, /simple/x/): no query, no
    userinfo, percent-decoded."""
    parts = text.split(" ")
    if len(parts) < 2 or not parts[0].isalpha():
        raise BadLine(f"request {text[:60]!r} is not METHOD URL PROTOCOL")
    target = parts[1]
    path = urlsplit(target).path if "://" in target else target.split("?", 1)[0]
    return parts[0].upper(), unquote(path or "/")


def _iso_time(text: str) -> float:
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise BadLine(f"time {text!r} is not ISO 8601") from None


def _address(text: str) -> str:
    """``192.168.131.39:2817`` -> the address; ``[::1]:80`` -> ``::1``; ``-`` stays."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        return text
    return host.strip("[]")


def _status(text: str) -> int | None:
    value = _int(text)
    return value if value is not None and 100 <= value <= 599 else None


def _int(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None
