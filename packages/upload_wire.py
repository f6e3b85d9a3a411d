"""What the upload API of an index reads and writes, as twine speaks it.

The form of one upload (PyPI's legacy API: a multipart POST of ``:action=file_upload``, the
distribution's core metadata and digests, the file as ``content``) and the file names a project
page lists back (PEP 691 JSON or PEP 503 HTML). Kept apart from ``pipstorm.packages.upload``,
which decides what to send and retries it, because these are pure functions of a file or a page:
they are what ``tests/packages/test_upload.py`` compares with twine's own fields, and what the
corpus check (``pipstorm.packages.index_check``) reads listings with.
"""

from __future__ import annotations

import email.parser
import hashlib
import html.parser
import json
import re
import tarfile
import urllib.request
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Final
from urllib.parse import urljoin, urlsplit


def listed_files(body: bytes, content_type: str, base_url: str) -> set[str]:
    """File names on a project page: PEP 691 JSON ``files[].filename``, or the last path
    segment of each HTML link."""
    if "json" in content_type.lower():
        try:
            page = json.loads(body)
        except ValueError:
            return set()
        entries = page.get("files", []) if isinstance(page, dict) else []
        return {e["filename"] for e in entries if isinstance(e, dict) and "filename" in e}
    collector = _Links()
    collector.feed(body.decode("utf-8", "replace"))
    names = set()
    for href in collector.hrefs:
        path = urlsplit(urljoin(base_url, href)).path
        names.add(urllib.request.url2pathname(path.rsplit("/", 1)[-1]))
    return names


class _Links(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.hrefs += [value for name, value in attrs if name == "href" and value]


def metadata_fields(path: Path) -> list[tuple[str, str]]:
    """The form fields twine sends for a distribution: core metadata and digests."""
    if path.name.endswith(".whl"):
        with zipfile.ZipFile(path) as archive:
            name = next(
                n for n in archive.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n)
            )
            raw = archive.read(name)
        filetype, pyversion = "bdist_wheel", path.name.split("-")[-3]
    else:
        raw = _sdist_pkg_info(path)
        filetype, pyversion = "sdist", "source"
    message = email.parser.BytesParser().parsebytes(raw)
    data = path.read_bytes()
    fields = [
        (":action", "file_upload"),
        ("protocol_version", "1"),
        ("filetype", filetype),
        ("pyversion", pyversion),
        ("metadata_version", message.get("Metadata-Version", "2.1")),
        ("name", message["Name"]),
        ("version", message["Version"]),
        ("md5_digest", hashlib.md5(data, usedforsecurity=False).hexdigest()),
        ("sha256_digest", hashlib.sha256(data).hexdigest()),
        ("blake2_256_digest", hashlib.blake2b(data, digest_size=32).hexdigest()),
    ]
    for header, key in _SINGLE_FIELDS:
        if (value := message.get(header)) is not None:
            fields.append((key, str(value)))
    for header, key in _LIST_FIELDS:
        fields += [(key, str(v)) for v in message.get_all(header) or ()]
    return fields


_SINGLE_FIELDS: Final = (
    ("Summary", "summary"),
    ("Home-page", "home_page"),
    ("Author", "author"),
    ("Author-email", "author_email"),
    ("License", "license"),
    ("Requires-Python", "requires_python"),
)
_LIST_FIELDS: Final = (
    ("Requires-Dist", "requires_dist"),
    ("Classifier", "classifiers"),
)


def _sdist_pkg_info(path: Path) -> bytes:
    if path.name.endswith(".zip"):
        with zipfile.ZipFile(path) as archive:
            member = next(n for n in archive.namelist() if re.fullmatch(r"[^/]+/PKG-INFO", n))
            return archive.read(member)
    with tarfile.open(path) as archive:
        for info in archive.getmembers():
            if re.fullmatch(r"[^/]+/PKG-INFO", info.name) and info.isfile():
                handle = archive.extractfile(info)
                if handle is not None:
                    return handle.read()
    raise ValueError(f"no PKG-INFO in {path.name}")


def multipart_body(fields: Iterable[tuple[str, str]], path: Path, boundary: str) -> bytes:
    """The POST body twine sends: each field a form part, the file last as ``content``."""
    parts: list[bytes] = []
    for name, value in fields:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + value.encode()
            + b"\r\n"
        )
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="content"; '
        f'filename="{path.name}"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode()
        + path.read_bytes()
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts)
