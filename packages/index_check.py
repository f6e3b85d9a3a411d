"""Does an index hold the corpus? One listing read before any load is sent.

A run against a remote index that lacks the corpus would only measure 404s, and one against a
URL that is not a simple index (a web UI, a login page, a typo that 404s) would measure nothing
useful either. One GET of one project's page tells them apart, each with one line that says what
to do, so ``pipstorm run --index-url`` can stop before it starts (exit 2).
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Final

from pipstorm.packages.index_url import index_base
from pipstorm.packages.spec import CorpusError, canonical_name
from pipstorm.packages.upload import (
    BasicAuth,
    IndexClient,
    UnreachableError,
    credentials_hint,
)
from pipstorm.packages.upload_wire import listed_files

_SIMPLE_TYPES: Final = ("text/html", "application/vnd.pypi.simple.")
_PASSWORD_INPUT_RE: Final = re.compile(rb"<input[^>]*type\s*=\s*[\"']?password", re.IGNORECASE)
_SAMPLE: Final = 3
#: Redirects urllib follows by itself: one that reaches us is a loop (or has no Location).
_FOLLOWED_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})


class IndexCheckError(CorpusError):
    """The index cannot serve the corpus; the message is one line naming the remedy."""


def upload_hint(index_url: str) -> str:
    """How to put the corpus on the index."""
    return f"put the corpus there with `pipstorm corpus upload --index-url {index_url}`"


def check_corpus(
    index_url: str,
    project: str,
    filenames: Collection[str],
    *,
    credentials: BasicAuth | None,
    timeout: float = 30.0,
) -> None:
    """Raise IndexCheckError unless the index's page for ``project`` lists every file in
    ``filenames`` (the corpus's files of that project)."""
    index = index_base(index_url)
    url = f"{index}{canonical_name(project)}/"
    try:
        page = IndexClient(credentials, timeout, index).fetch(url)
    except UnreachableError as exc:
        if "CERTIFICATE_VERIFY_FAILED" in exc.reason:
            raise IndexCheckError(
                f"index {index_url}: its TLS certificate is not trusted ({exc.reason}); for an "
                "index with a private CA, point SSL_CERT_FILE at a bundle holding it"
            ) from None
        raise IndexCheckError(f"index {index_url} is unreachable: {exc.reason}") from None
    if page.status in _FOLLOWED_REDIRECTS:  # urllib follows these, unless they loop
        raise IndexCheckError(
            f"{url} answered HTTP {page.status} again and again (a redirect loop, or a redirect "
            "without a Location): check the URL"
        )
    if page.status in (401, 403):
        raise IndexCheckError(
            credentials_hint(page.status, index_url, given=credentials is not None)
        )
    if page.status == 404:
        raise IndexCheckError(
            f"the index has no project {project} ({url} is 404): {upload_hint(index_url)}, "
            "or check the URL"
        )
    if page.status != 200:
        raise IndexCheckError(f"the index answered {page.status} to {url}: not a simple index?")
    content_type = page.content_type.split(";", 1)[0].strip().lower()
    if not content_type.startswith(_SIMPLE_TYPES):
        raise IndexCheckError(
            f"{url} is not a simple index page (it answered {content_type or 'no content type'})"
        )
    if _PASSWORD_INPUT_RE.search(page.body):
        raise IndexCheckError(
            f"{url} answered a login page, not a simple index: check the URL and the "
            "credentials (PYPI_USERNAME, PYPI_PASSWORD)"
        )
    listed = listed_files(page.body, page.content_type, page.url)
    if not listed:
        raise IndexCheckError(
            f"{url} links no files: not a simple index, or {project} is empty; "
            f"{upload_hint(index_url)}"
        )
    missing = sorted(set(filenames) - listed)
    if missing:
        sample = ", ".join(missing[:_SAMPLE]) + (", ..." if len(missing) > _SAMPLE else "")
        raise IndexCheckError(
            f"the index lacks {len(missing)} of {len(filenames)} files of {project} ({sample}): "
            f"{upload_hint(index_url)}"
        )
