"""The one normal form of an index URL, shared by every layer that joins paths onto one.

A simple index URL is a folder: ``https://host/simple`` and ``https://host/simple/`` name the
same index, and ``urljoin`` or an f-string onto the first drops or glues the last segment. So
every place that joins onto an index URL (the target opening, the corpus upload and check, the
proxy's upstream layout) normalises it here, and only here. Stdlib-only: the proxy imports it.
"""

from __future__ import annotations


def index_base(url: str) -> str:
    """``url`` ending in exactly one ``/`` more than it lacked: ``.../simple`` -> ``.../simple/``
    (a URL or a URL path; one already ending in ``/`` comes back unchanged)."""
    return url if url.endswith("/") else url + "/"
