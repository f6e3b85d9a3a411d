"""Where a proxied request goes upstream, and how upstream URLs are turned back into proxy URLs.

Each client run reaches the proxy under its own prefix, so every request it makes, follow-ups
included, is attributed to it:

- ``/r/<run>/X`` forwards to ``ROOT + X``, where ROOT is the upstream index URL without its last
  ``simple/`` segment (``https://host/api/pypi/repo/simple/`` -> ``https://host/api/pypi/repo/``);
- ``/o/<run>/X`` forwards to ``ORIGIN/X`` for upstream links outside ROOT.

Upstream URLs in ``Location`` headers and listing bodies are rewritten back into those forms,
absolute ones (``ORIGIN/...``) and origin-relative ones (``/...``), which a client would otherwise
resolve against the proxy without the run prefix. Relative links (``../../packages/x.whl``) need
nothing. Links to other hosts are left alone: they are not the index under test.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlsplit

RUN_ID_RE: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_INDEX_SEGMENT: Final = "simple/"


@dataclass(frozen=True)
class UpstreamLayout:
    """The upstream index URL split into what routing and rewriting need."""

    origin: str  # scheme://host[:port], no trailing slash
    root_path: str  # begins and ends with "/"
    index_suffix: str  # "simple/" or "" (what follows ROOT in the index URL)
    _body_re: re.Pattern[bytes] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        origin = re.escape(self.origin.encode())
        # An absolute upstream URL (not followed by more host characters, so ":80" does not
        # match ":8080"), or an origin-relative href/src/"url" value ("/x", not "//host/x").
        pattern = (
            rb"(?:" + origin + rb"(?![\w.:@-])(?P<abs>/[^\"'\s<>]*)?)"
            rb"|(?:(?P<pre>\b(?:href|src)\s*=\s*[\"']|\"url\"\s*:\s*\")"
            rb"(?P<rel>/(?!/)[^\"'\s<>]*))"
        )
        object.__setattr__(self, "_body_re", re.compile(pattern, re.IGNORECASE))

    @classmethod
    def parse(cls, index_url: str) -> UpstreamLayout:
        """Split an index URL; ValueError (one line) for one the proxy cannot front."""
        parts = urlsplit(index_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"upstream index URL must be http(s)://host/...: {index_url!r}")
        if parts.username is not None or parts.password is not None:
            raise ValueError(
                "upstream index URL must not contain credentials (they would show in argv); "
                "pass them separately"
            )
        if parts.query or parts.fragment:
            raise ValueError(f"upstream index URL must not have a query or fragment: {index_url}")
        try:
            _ = parts.port
        except ValueError:
            raise ValueError(f"upstream index URL has a bad port: {index_url}") from None
        path = parts.path if parts.path.endswith("/") else parts.path + "/"
        suffix = ""
        if path.endswith("/" + _INDEX_SEGMENT):
            path, suffix = path[: -len(_INDEX_SEGMENT)], _INDEX_SEGMENT
        return cls(origin=f"{parts.scheme}://{parts.netloc}", root_path=path, index_suffix=suffix)

    @property
    def root(self) -> str:
        """ROOT: what ``/r/<run>/`` stands for."""
        return self.origin + self.root_path

    def route(self, raw_path: str) -> tuple[str, str] | None:
        """``(run_id, upstream path+query)`` for a proxy path, or None when it is unattributed."""
        path, sep, query = raw_path.partition("?")
        if path.startswith("/r/"):
            base = self.root_path
        elif path.startswith("/o/"):
            base = "/"
        else:
            return None
        run_id, _, rest = path[3:].partition("/")
        if RUN_ID_RE.fullmatch(run_id) is None:
            return None
        return run_id, base + rest + sep + query

    def proxy_path(self, run_id: str, upstream_path: str) -> str:
        """The proxy path for an origin-relative upstream path."""
        if upstream_path.startswith(self.root_path):
            return f"/r/{run_id}/{upstream_path[len(self.root_path) :]}"
        return f"/o/{run_id}{upstream_path}"

    def rewrite_location(self, location: str, run_id: str, proxy_url: str) -> str:
        """A ``Location`` value that keeps the client on the proxy, under the same run."""
        if location.startswith(self.origin):
            rest = location[len(self.origin) :]
            if not rest:
                return proxy_url + self.proxy_path(run_id, "/")
            if rest[0] in "/?#":
                path = rest if rest[0] == "/" else "/" + rest
                return proxy_url + self.proxy_path(run_id, path)
            return location  # e.g. http://host:8080 when the origin is http://host:80
        if location.startswith("/") and not location.startswith("//"):
            return self.proxy_path(run_id, location)
        return location

    def rewrite_body(self, body: bytes, run_id: str, proxy_url: str) -> bytes:
        """A listing body (HTML or PEP 691 JSON) whose upstream links point at the proxy."""
        proxy = proxy_url.encode()

        # latin-1 maps bytes to code points one to one, so any byte in a path survives.
        def replace(match: re.Match[bytes]) -> bytes:
            rel = match.group("rel")
            if rel is not None:
                return match.group("pre") + self.proxy_path(run_id, rel.decode("latin-1")).encode(
                    "latin-1"
                )
            path = match.group("abs") or b"/"
            return proxy + self.proxy_path(run_id, path.decode("latin-1")).encode("latin-1")

        return self._body_re.sub(replace, body)
