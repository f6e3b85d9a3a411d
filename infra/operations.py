"""The operation of a request: the class thresholds and statistics are kept per.

Classified by what was served, not by the URL's shape, so any index layout works
(``classify_served``): the proxy calls it once the upstream has answered. The path heuristics
of ``classify`` remain for two cases only, both documented where they are used:

- the fallback of ``classify_served``, when nothing served says more (no response came, or an
  answer that is neither a listing's content type nor a URL a listing linked);
- fault matching (``pipstorm.infra.faults.plan``), which must pick a rule *before* the upstream
answers.
"""

from __future__ import annotations

import re
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
#: Content types of a simple-API page (PEP 503 HTML, PEP 691 JSON and HTML).
LISTING_TYPES: Final[tuple[str, ...]] = ("application/vnd.pypi.simple.", "text/html")
_UPLOAD_METHODS: Final = frozenset({"POST", "PUT"})
# A path segment `simple` or devpi's `+simple`, as the last one or followed by more.
_LISTING_PATH_RE: Final = re.compile(r"/\+?simple(?:/|$)")

Linked = Literal["file", "metadata"]


def classify(method: str, path: str, status: int | None) -> Operation:
    """Classify one request by its method and the shape of its path (the fallback).

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
    if _LISTING_PATH_RE.search(bare):
        return "listing"
    return "other"


def classify_served(
    method: str,
    path: str,
    status: int | None,
    *,
    content_type: str | None,
    linked: Linked | None,
) -> Operation:
    """Classify one exchange by what was served.

    In order: a 3xx is a ``redirect``; POST/PUT an ``upload``; a URL a listing linked as a file
    (``linked``, see ``pipstorm.infra.proxy.links``) a ``download``, its PEP 658 ``.metadata`` a
    ``metadata``, whatever the answer (an error page for a file is a failed download); an
    answer with a simple-API content type a ``listing``; anything else falls back to the path's
    shape (``classify``).
    """
    if status is not None and 300 <= status < 400:
        return "redirect"
    if method in _UPLOAD_METHODS:
        return "upload"
    if linked == "file":
        return "download"
    if linked == "metadata":
        return "metadata"
    if content_type is not None and content_type.lower().startswith(LISTING_TYPES):
        return "listing"
    return classify(method, path, status)
