"""What a logged path asks for: a project's listing, a release's file, an upload, or nothing.

Read from the path's shape, as an index lays it out: ``/simple/<name>/`` (or devpi's
``/+simple/<name>/``) is a listing of ``<name>``; a path ending in a distribution file name
(``/packages/requests-2.31.0-py3-none-any.whl``, ``.tar.gz``, ``.zip``, with or without
PEP 658's ``.metadata``) is that file; POST or PUT is an upload. Names are PEP 503-normalized.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from pipstorm.packages.spec import canonical_name, is_canonical_version

Asked = Literal["listing", "file", "upload", "other"]

_LISTING_RE = re.compile(r"/\+?simple/([^/]+)/?$")
_SDIST_RE = re.compile(r"^(?P<name>.+?)-(?P<version>[0-9][^-]*)\.(?:tar\.gz|zip|tar\.bz2)$")


@dataclass(frozen=True)
class Target:
    """What one request asked for: its kind, the project, and the version a file names."""

    asked: Asked
    project: str | None = None
    version: str | None = None


def target_of(method: str, path: str) -> Target:
    """What ``method path`` asks for (``other``: a health check, the root, a search...)."""
    if method in {"POST", "PUT"}:
        return Target("upload")
    name = path.rstrip("/").rsplit("/", 1)[-1].removesuffix(".metadata")
    release = release_of_file(name)
    if release is not None:
        return Target("file", *release)
    listing = _LISTING_RE.search(path)
    if listing is not None:
        return Target("listing", canonical_name(listing.group(1)))
    return Target("other")


def release_of_file(filename: str) -> tuple[str, str] | None:
    """``(project, version)`` of a wheel or sdist file name, None if it is neither (or its
    version is not a plain release number a client can pin)."""
    if filename.endswith(".whl"):
        parts = filename[: -len(".whl")].split("-")
        if len(parts) < 5:
            return None
        name, version = parts[0], parts[1]
    else:
        match = _SDIST_RE.match(filename)
        if match is None:
            return None
        name, version = match.group("name"), match.group("version")
    if not name or not is_canonical_version(version):
        return None
    return canonical_name(name), version
