"""Sending one corpus file again after a timeout or a reset, without ever sending it twice.

Under load an index drops a few uploads (1-2 of 300 on devpi, issue 24): the request timed out
or its connection was reset. Whether the file landed is then unknown: the index may have stored
it and lost only its answer. Resending blindly would overwrite it on an index that allows that
(a volatile devpi index), so before each resend the project's listing is read again: a file the
index lists counts as uploaded and is not sent again. A listing that cannot be read either is
one more failed attempt to wait out, never a reason to resend. Waits grow (``backoff_s``: 1, 2,
4 s by default) so that an index that is briefly overloaded is not hammered by the retries.

Only a failure that may pass is retried (no answer at all, 408, 429, 502, 503, 504); a refusal
(400, 401, 403) or an unreadable file fails at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Final, Protocol, TypeVar

from pipstorm.packages.spec import CorpusError

#: The waits before each new attempt: three retries after the first try.
DEFAULT_BACKOFF_S: Final = (1.0, 2.0, 4.0)
#: HTTP answers that say "not now" rather than "no".
TRANSIENT_STATUSES: Final = frozenset({408, 429, 502, 503, 504})


class Settled(Protocol):
    """What an attempt returns (``pipstorm.packages.upload.FileResult``)."""

    @property
    def outcome(self) -> str: ...
    @property
    def transient(self) -> bool: ...


R = TypeVar("R", bound=Settled)


def send_with_retries(
    send: Callable[[], R],
    arrived: Callable[[], bool],
    *,
    landed: Callable[[R], R],
    noted: Callable[[R, str], R],
    backoff_s: Sequence[float] = DEFAULT_BACKOFF_S,
    sleep: Callable[[float], None] = time.sleep,
) -> R:
    """``send()`` once, then again after each wait while it fails transiently and ``arrived()``
    says the index does not have the file. ``landed(failed)`` is the result when the index turns
    out to have it; ``noted(result, text)`` adds to a result's detail. ``arrived`` raising
    ``CorpusError`` (the upload's one-line errors) counts as one more failed attempt."""
    result = send()
    sent = 1
    for wait in backoff_s:
        if not _retryable(result):
            return result
        sleep(wait)
        try:
            there = arrived()
        except CorpusError as exc:  # the listing unreachable or refused too: wait again
            result = noted(result, f"and then its listing: {exc}")
            continue
        if there:
            return landed(result)
        failed, result = result, send()
        sent += 1
        if result.outcome != "failed":  # say that it took a retry, and why
            result = noted(result, f"attempt {sent}, after {_why(failed)}")
    if _retryable(result):
        result = noted(result, f"after {sent} attempt{'s' if sent != 1 else ''}")
    return result


def _retryable(result: Settled) -> bool:
    return result.outcome == "failed" and result.transient


def _why(failed: Settled) -> str:
    detail = getattr(failed, "detail", "")
    return str(detail) if detail else "a failure"
