"""What the index has linked during this proxy's life: the origins the proxy may forward to, and
the URLs listings named as files.

Why a gate: ``/o/<run>/<key>/`` can name any origin, so without one the proxy would be an open
proxy on the operator's machine. It forwards only to the index's own origin, to origins given
with ``--allow-origin``, and to origins the index itself pointed clients at (a listing's link or
a redirect's ``Location``), which is what a client would reach without the proxy.

Why file URLs: an operation is classified by what was served (``pipstorm.infra.operations``); a URL
a listing linked as a file is a ``download`` whatever its shape (an S3 key, a ``/+f/`` hash path, a
redirect target), its ``.metadata`` sibling a ``metadata``. The set is bounded: a corpus has a
fixed number of files, and past the bound classification falls back to the path's shape.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Final
from urllib.parse import unquote

from pipstorm.infra.operations import Linked
from pipstorm.infra.proxy.rewrite import Links, Origin

MAX_FILES: Final = 200_000
_METADATA: Final = ".metadata"


class LinkBook:
    """Allowed origins and linked file URLs; used from the proxy's one event-loop thread."""

    def __init__(
        self, index_origin: Origin, allowed: Iterable[Origin] = (), *, loopback_only: bool = False
    ) -> None:
        self.index_origin = index_origin
        # When the run may load loopback addresses only, a linked file host elsewhere is
        # refused too: the index could otherwise steer load anywhere.
        self.loopback_only = loopback_only
        self._origins: set[Origin] = {index_origin, *allowed}
        self._files: set[str] = set()
        self._pages: set[tuple[str, int]] = set()  # listings whose files are known

    def allows(self, origin: Origin | None) -> bool:
        """Whether the proxy may forward a request to ``origin``."""
        if origin is None or origin not in self._origins:
            return False
        return not self.loopback_only or origin == self.index_origin or is_loopback(origin.host)

    def learn(self, links: Links, body: bytes) -> None:
        """Remember what one listing linked; its files only the first time this listing
        (URL and body) is seen."""
        self._origins.update(links.origins)
        if not links.hrefs:
            return
        key = (links.base_url, hash(body))
        if key in self._pages:
            return
        if len(self._pages) < MAX_FILES:
            self._pages.add(key)
        for url in links.files():
            self.add_file(url)

    def learn_redirect(self, origin: Origin, target: str, *, from_file: bool) -> None:
        """Remember a redirect's target; the target of a redirected file is that file."""
        self._origins.add(origin)
        if from_file:
            self.add_file(target)

    def add_file(self, url: str) -> None:
        """Remember one file URL (absolute, upstream, no fragment), within the bound."""
        if len(self._files) < MAX_FILES:
            self._files.add(_bare(url))

    def linked(self, url: str) -> Linked | None:
        """``file`` or ``metadata`` for a URL a listing linked (by itself or with
        ``.metadata`` appended, PEP 658), else None."""
        bare = _bare(url)
        if bare in self._files:
            return "file"
        if bare.endswith(_METADATA) and bare[: -len(_METADATA)] in self._files:
            return "metadata"
        return None


def is_loopback(host: str) -> bool:
    """A literal loopback address or ``localhost`` (names are not resolved: a name could
    resolve anywhere later)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bare(url: str) -> str:
    """The URL without query, percent-decoded: pip asks for ``%2Bf/`` where devpi linked
    ``+f/``, and the two are one file."""
    return unquote(url.partition("?")[0])
