"""The operation of a request: the class thresholds and statistics are kept per.

A pure function of what the proxy sees, so the engine, the report and the tests agree on it.
"""

from __future__ import annotations

from typing import Final, Literal

Operation = Literal["listing", "download", "redirect", "metadata", "upload", "other"]
OPERATIONS: Final[tuple[Operation, ...]] = (
    "listing",
    "download",
    "redirect",
    "metadata",
    "upload",
    "other",
)

# Distribution files an index serves; ".tar.gz" etc. are checked as plain suffixes.
DISTRIBUTION_SUFFIXES: Final[tuple[str, ...]] = (
    ".whl",
    ".tar.gz",
    ".zip",
    ".tar.bz2",
    ".egg",
)
_UPLOAD_METHODS: Final = frozenset({"POST", "PUT"})


def classify(method: str, path: str, status: int | None) -> Operation:
    """Classify one request.

    ``path`` is the path (and query) as sent upstream; ``status`` the upstream status, or None
    when no response came. A 3xx is a ``redirect`` whatever was asked, because following it is
    a separate request that gets its own class.
    """
    if status is not None and 300 <= status < 400:
        return "redirect"
    if method in _UPLOAD_METHODS:
        return "upload"
    bare = path.split("?", 1)[0].lower()
    if bare.endswith(".metadata"):
        return "metadata"
    if bare.endswith(DISTRIBUTION_SUFFIXES):
        return "download"
    if bare.endswith("/simple") or "/simple/" in bare:
        return "listing"
    return "other"
