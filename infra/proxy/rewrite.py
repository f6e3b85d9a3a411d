"""Where a proxied request goes upstream, and how upstream URLs are turned back into proxy URLs.

Each client run reaches the proxy under its own prefix, so every request it makes, follow-ups
included, is attributed to it. The prefix mirrors a whole origin's path space, so no relative
link a client resolves can leave it, whatever the index's layout (``/simple/``, devpi's
``/user/index/+simple/`` with files at ``../../+f/...``, ``/api/pypi/<repo>/simple/``, GitLab's
``/api/v4/projects/<id>/packages/pypi/simple/``, a static ``/index/``):

- ``/r/<run>/X`` forwards to ``INDEX_ORIGIN/X``; the client's index URL is
  ``/r/<run>/<the index path>``;
- ``/o/<run>/<key>/X`` forwards to ``OTHER_ORIGIN/X``, for files a listing links on another origin
  (a CDN, S3, PyPI's file host). ``key`` names the origin (``https-443-files.example``); whether
  the proxy may go there is the handler's decision (``pipstorm.infra.proxy.links``), not this
  module's.

Upstream URLs in ``Location`` headers and listing bodies (HTML ``href``/``src`` values, PEP 691
JSON ``files[].url``) are rewritten into those forms: absolute ones (``https://host/...``),
scheme-relative ones (``//host/...``) and origin-relative ones (``/...``), which a client would
otherwise resolve against the proxy without the run prefix. Relative links need nothing. PEP
658/714 metadata attributes (``data-dist-info-metadata``, ``data-core-metadata``, JSON
``core-metadata``) are hashes, not URLs: they are kept as they are, and the metadata URL a client
derives (the file URL + ``.metadata``) maps onto the upstream's because the file URL does. Links
with user information (``https://user:pw@host/``) are left alone: the proxy does not carry
credentials it was not given.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import unquote, urljoin, urlsplit

from pipstorm.packages.index_url import index_base

# "." and ".." are dot segments, not run ids: a client or upstream would resolve them away.
RUN_ID_RE: Final = re.compile(r"(?!\.\.?$)[A-Za-z0-9_.-]{1,64}")
# Percent-decoding rounds ``has_dot_segment`` undoes (a server may decode more than once).
_DECODE_ROUNDS: Final = 4
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_RUN_IDS_KEPT: Final = 4096
_KEY_RE: Final = re.compile(r"(https?)-([0-9]{1,5})-([A-Za-z0-9.\-_~:%]+)")
# An href/src attribute and its value, quoted either way or not at all.
_ATTR_RE: Final = re.compile(
    rb"(?P<pre>\b(?:href|src)\s*=\s*)"
    rb"(?:\"(?P<dq>[^\"]*)\"|'(?P<sq>[^']*)'|(?P<uq>[^\s\"'>]+))",
    re.IGNORECASE,
)
_ABSOLUTE_RE: Final = re.compile(r"(?i)(https?):(//.*)")
_QUOTES: Final = {"dq": b'"', "sq": b"'", "uq": b""}


@dataclass(frozen=True, slots=True)
class Origin:
    """``scheme://host:port`` in a normal form (lower case, explicit port) so two spellings of
    one origin compare equal; ``url`` spells it back without a default port."""

    scheme: str
    host: str  # without brackets for IPv6
    port: int
    # ``url``, ``host_header`` and the hash, made once: every proxied request asks for them
    # (the hash three times: the allowed origins, the pool's idle connections both ways).
    _url: str = field(init=False, repr=False, compare=False)
    _host_header: bytes = field(init=False, repr=False, compare=False)
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.port != _DEFAULT_PORTS[self.scheme]:
            host = f"{host}:{self.port}"
        object.__setattr__(self, "_url", f"{self.scheme}://{host}")
        object.__setattr__(self, "_host_header", host.encode("latin-1"))
        object.__setattr__(self, "_hash", hash((self.scheme, self.host, self.port)))

    def __hash__(self) -> int:
        return self._hash

    def __reduce__(self) -> tuple[type[Origin], tuple[str, str, int]]:
        # Made anew where unpickled: a str's hash differs from process to process.
        return (Origin, (self.scheme, self.host, self.port))

    @classmethod
    def from_url(cls, url: str) -> Origin | None:
        """The origin of an absolute http(s) URL; None for anything else, and for a URL with
        user information or a bad port (the proxy neither carries nor reveals credentials)."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            return None
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS or not parts.hostname or "@" in parts.netloc:
            return None
        return cls(scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme])

    @classmethod
    def from_key(cls, key: str) -> Origin | None:
        """The origin a ``/o/<run>/<key>/`` key names; None for a malformed key."""
        match = _KEY_RE.fullmatch(key)
        if match is None or not 0 < int(match.group(2)) <= 65535:
            return None
        return cls(match.group(1), match.group(3).lower(), int(match.group(2)))

    @property
    def key(self) -> str:
        """The path segment naming this origin: ``https-443-files.example``."""
        return f"{self.scheme}-{self.port}-{self.host}"

    @property
    def url(self) -> str:
        """``scheme://host[:port]``, no trailing slash."""
        return self._url

    @property
    def host_header(self) -> bytes:
        """``host[:port]`` as a request's ``Host`` header names the origin."""
        return self._host_header


@dataclass(slots=True)
class Route:
    """Where one proxy path goes: the run it belongs to, the upstream origin (None: a key no
    origin has) and the path and query to ask there. Not frozen: one is made per request, and
    a frozen dataclass's ``__init__`` costs a call per field; nothing changes one."""

    run_id: str
    origin: Origin | None
    path: str
    index_origin: bool

    @property
    def upstream_url(self) -> str:
        """The absolute upstream URL (only for a route with an origin)."""
        assert self.origin is not None  # noqa: S101 - callers check
        return self.origin.url + self.path

    def recorded_path(self) -> str:
        """The path as a record shows it: origin-relative on the index's origin; on another
        origin the absolute URL without its query (a signed URL's query is a credential)."""
        if self.index_origin:
            return self.path
        base = self.origin.url if self.origin is not None else "unknown-origin"
        bare, sep, _ = self.path.partition("?")
        return base + bare + ("?..." if sep else "")


@dataclass(frozen=True, slots=True)
class Links:
    """What rewriting one listing found: the other origins it pointed the client at, and its
    file links as written (``hrefs``, resolved by ``files()`` only when wanted: a load test
    fetches the same page many times, and resolving hundreds of links each time would cost)."""

    base_url: str = ""
    hrefs: tuple[str, ...] = ()
    origins: frozenset[Origin] = frozenset()
    html: bool = False

    def files(self) -> tuple[str, ...]:
        """The file URLs: absolute, upstream, without fragment (links ending in ``/`` are
        pages, not files)."""
        found = []
        for href in self.hrefs:
            value = html.unescape(href) if self.html and "&" in href else href
            target = urljoin(self.base_url, value).partition("#")[0]
            if not urlsplit(target).path.endswith("/"):
                found.append(target)
        return tuple(found)


@dataclass(frozen=True)
class UpstreamLayout:
    """The upstream index URL split into what routing and rewriting need."""

    origin: Origin
    index_path: str  # begins and ends with "/"
    _origin_url: str = field(init=False, repr=False, compare=False)
    # Run ids found valid lately: a run's every request carries its id (no regex per request).
    _run_ids: dict[str, None] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_origin_url", self.origin.url)

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
        origin = Origin.from_url(index_url)
        if origin is None:
            raise ValueError(f"upstream index URL has a bad port: {index_url}")
        path = parts.path or "/"
        return cls(origin=origin, index_path=index_base(path))

    @property
    def index_url(self) -> str:
        """The normalised upstream index URL."""
        return self._origin_url + self.index_path

    def route(self, raw_path: str) -> Route | None:
        """The route of a proxy path, or None when it is unattributed (no valid run prefix)."""
        path, sep, query = raw_path.partition("?")
        if not path.startswith(("/r/", "/o/")):
            return None
        run_id, _, rest = path[3:].partition("/")
        if run_id not in self._run_ids and not self._valid_run_id(run_id):
            return None
        if path.startswith("/r/"):
            return Route(run_id, self.origin, "/" + rest + sep + query, index_origin=True)
        key, _, rest = rest.partition("/")
        origin = Origin.from_key(key)
        upstream = "/" + rest + sep + query
        return Route(run_id, origin, upstream, index_origin=origin == self.origin)

    def _valid_run_id(self, run_id: str) -> bool:
        """Whether ``run_id`` is one (``RUN_ID_RE``); a valid one is remembered, within a bound."""
        if RUN_ID_RE.fullmatch(run_id) is None:
            return False
        if len(self._run_ids) >= _RUN_IDS_KEPT:
            del self._run_ids[next(iter(self._run_ids))]
        self._run_ids[run_id] = None
        return True

    def proxy_prefix(self, run_id: str, origin: Origin) -> str:
        """The proxy path that stands for ``origin``'s root in run ``run_id``."""
        if origin == self.origin:
            return f"/r/{run_id}"
        return f"/o/{run_id}/{origin.key}"

    def map_url(self, url: str, run_id: str, proxy_url: str) -> tuple[str, Origin] | None:
        """An absolute upstream URL as a proxy URL, and its origin; None when it is not one
        the proxy may carry (not http(s), user information)."""
        match = _ABSOLUTE_RE.match(url)
        if match is None:
            return None
        origin = Origin.from_url(url)
        if origin is None:
            return None
        after_netloc = match.group(2)[2:]
        cut = min((i for i in map(after_netloc.find, "/?#") if i >= 0), default=len(after_netloc))
        rest = after_netloc[cut:]
        if not rest.startswith("/"):
            rest = "/" + rest
        return proxy_url + self.proxy_prefix(run_id, origin) + rest, origin

    def rewrite_location(
        self, location: str, base_url: str, run_id: str, proxy_url: str
    ) -> tuple[str, str | None, Origin | None]:
        """A ``Location`` value that keeps the client on the proxy, under the same run.

        ``base_url`` is the upstream URL that answered. Returns the new value, the absolute
        upstream target (None when left alone) and its origin.
        """
        target = urljoin(base_url, location.strip())
        mapped = self.map_url(target, run_id, proxy_url)
        if mapped is None:
            return location, None, None
        return mapped[0], target.partition("#")[0], mapped[1]

    def rewrite_listing(
        self,
        body: bytes,
        content_type: str,
        base_url: str,
        run_id: str,
        proxy_url: str,
    ) -> tuple[bytes, Links]:
        """A listing body (HTML or PEP 691 JSON) whose links point at the proxy, and its links.

        ``base_url`` is the upstream URL of the listing; links on the index's own page (its
        root, which lists projects) are not files.
        """
        is_root = urlsplit(base_url).path == self.index_path
        if "json" in content_type.lower():
            return self._rewrite_json(body, base_url, run_id, proxy_url)
        return self._rewrite_html(body, base_url, run_id, proxy_url, files=not is_root)

    def _rewrite_value(
        self, value: str, base_url: str, run_id: str, proxy_url: str
    ) -> tuple[str, Origin | None]:
        """One link value: absolute and origin-relative ones mapped, relative ones kept."""
        if value.startswith("//"):
            value = base_url.split(":", 1)[0] + ":" + value
        if _ABSOLUTE_RE.match(value):
            mapped = self.map_url(value, run_id, proxy_url)
            return (value, None) if mapped is None else mapped
        if value.startswith("/"):
            origin = Origin.from_url(base_url)
            if origin is not None:
                return self.proxy_prefix(run_id, origin) + value, origin
        return value, None

    def _rewrite_html(
        self, body: bytes, base_url: str, run_id: str, proxy_url: str, *, files: bool
    ) -> tuple[bytes, Links]:
        found: list[str] = []
        origins: set[Origin] = set()

        # latin-1 maps bytes to code points one to one, so any byte in a path survives.
        def replace(match: re.Match[bytes]) -> bytes:
            group = match.lastgroup or "uq"  # the value's group closes last
            raw = match.group(group).decode("latin-1")
            if files:
                found.append(raw)
            if not raw.startswith(("/", "http", "HTTP", "Http")):
                return match.group(0)  # relative: stays under the run's prefix as it is
            new, origin = self._rewrite_value(raw, base_url, run_id, proxy_url)
            if origin is not None and origin != self.origin:
                origins.add(origin)
            quote = _QUOTES[group]
            return match.group("pre") + quote + new.encode("latin-1") + quote

        rewritten = _ATTR_RE.sub(replace, body)
        return rewritten, Links(base_url, tuple(found), frozenset(origins), html=True)

    def _rewrite_json(
        self, body: bytes, base_url: str, run_id: str, proxy_url: str
    ) -> tuple[bytes, Links]:
        try:
            page = json.loads(body)
        except ValueError:
            return body, Links()
        found: list[str] = []
        origins: set[Origin] = set()
        for entry in _file_entries(page):
            url = entry["url"]
            new, origin = self._rewrite_value(url, base_url, run_id, proxy_url)
            if origin is not None and origin != self.origin:
                origins.add(origin)
            found.append(url)
            entry["url"] = new
        if not found:
            return body, Links()
        return json.dumps(page, separators=(",", ":")).encode(), Links(
            base_url, tuple(found), frozenset(origins)
        )


def _file_entries(page: object) -> Iterator[dict[str, Any]]:
    """The ``files`` entries of a PEP 691 project page that carry a string ``url``."""
    if not isinstance(page, dict):
        return
    entries = page.get("files")
    if not isinstance(entries, list):
        return
    for entry in entries:
        if isinstance(entry, dict) and isinstance(entry.get("url"), str):
            yield entry


def has_dot_segment(raw_path: str) -> bool:
    """Whether a request path (its query ignored) holds a ``.`` or ``..`` segment, also once
    percent-decoded (``%2e%2e``, ``..%2f``, ``%252e``) or spelled with backslashes.

    No client sends one (they resolve relative links before asking), and forwarded as it is,
    an upstream that resolves it would serve what lies outside the run's path, or beyond its
    own root.
    """
    path = raw_path.partition("?")[0]
    if "/." not in path and "%" not in path and "\\" not in path and not path.startswith("."):
        return False  # no segment begins with a dot, and nothing decodes into one
    for _ in range(_DECODE_ROUNDS):
        segments = path.replace("\\", "/").split("/")
        if "." in segments or ".." in segments:
            return True
        decoded = unquote(path)
        if decoded == path:
            return False
        path = decoded
    return True  # still encoded after that many rounds: no honest client does this


def parse_origins(urls: Sequence[str]) -> tuple[Origin, ...]:
    """``--allow-origin`` values as origins; ValueError (one line) for one that is not
    ``http(s)://host[:port]``."""
    origins: list[Origin] = []
    for url in urls:
        parts = urlsplit(url)
        if parts.username or parts.password:  # never quoted: it would print the password
            raise ValueError("--allow-origin must be http(s)://host[:port], without credentials")
        origin = Origin.from_url(url)
        if origin is None or parts.path not in ("", "/"):
            raise ValueError(f"--allow-origin must be http(s)://host[:port]: {url!r}")
        origins.append(origin)
    return tuple(origins)
