"""Put a corpus on an index: the core of ``pipstorm corpus upload``.

A remote index must hold the corpus before load can be sent to it. This speaks the upload API
every index implements (PyPI's legacy one, as twine does: a multipart POST with
``:action=file_upload``, the metadata fields and the file as ``content``) so that pypiserver,
devpi, Artifactory, Nexus, CodeArtifact and GitLab take it alike, without a twine process per
file.

Why it is idempotent: the project's listing is read first (one GET per project, PEP 691 JSON or
HTML), and files already there are skipped and counted; a 409 answer (a concurrent upload, or an
index that hides files from its listing) counts as skipped too. A second upload of the same
corpus therefore sends nothing and says so, and a volatile devpi index is never overwritten.

Credentials come from ``PYPI_USERNAME``/``PYPI_PASSWORD`` in the environment only (never argv)
and go to the index's own origin only; no message repeats them.
"""

from __future__ import annotations

import http.client
import re
import secrets
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final, Literal, Protocol
from urllib.parse import urlsplit

from pipstorm.packages.index_url import index_base
from pipstorm.packages.retry import DEFAULT_BACKOFF_S, TRANSIENT_STATUSES, send_with_retries
from pipstorm.packages.spec import CorpusError, canonical_name
from pipstorm.packages.upload_wire import listed_files, metadata_fields, multipart_body

USERNAME_ENV: Final = "PYPI_USERNAME"
PASSWORD_ENV: Final = "PYPI_PASSWORD"  # noqa: S105 - a variable name
DEFAULT_CONCURRENCY: Final = 8
DEFAULT_TIMEOUT_S: Final = 60.0
_ACCEPT: Final = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.1"  # noqa: E501
_USER_AGENT: Final = "pipstorm-corpus-upload/1"
_DIST_RE: Final = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)(?:-.+)?\.(?:whl|tar\.gz|zip)$")
_LOOPBACK: Final = ("127.0.0.1", "::1", "localhost")

Outcome = Literal["uploaded", "skipped", "failed"]


class UploadError(CorpusError):
    """The upload cannot go on (bad URL, the index refused the credentials); one line."""


class UnreachableError(UploadError):
    """No HTTP answer at all; ``reason`` says why (refused, timed out, no such host)."""

    def __init__(self, url: str, reason: object) -> None:
        super().__init__(f"cannot reach the index at {url}: {reason}")
        self.reason = str(reason)


class BasicAuth(Protocol):
    """What talking to an index needs of credentials: the ``Authorization`` header's value.

    ``pipstorm.infra.credentials.Credentials`` is the one credentials class; this layer, the
    bottom one, names only what it uses of it (it must not import infra)."""

    def basic_auth_header(self) -> str:
        """``Basic <base64(user:password)>``."""
        ...


@dataclass(frozen=True)
class FileResult:
    """What happened to one file; ``detail`` is the index's short answer for a failure (and
    how the retries ended: ``pipstorm.packages.retry``)."""

    path: Path
    outcome: Outcome
    status: int | None = None
    detail: str = ""
    #: The failure may pass (no answer, or 408/429/502/503/504): worth a retry.
    transient: bool = False


@dataclass(frozen=True)
class UploadSummary:
    """Counts of a whole upload, and the failures in full."""

    uploaded: int
    skipped: int
    failures: tuple[FileResult, ...]
    seconds: float
    #: Files that landed only after a timeout or reset: ``name: how`` (``pipstorm.packages.retry``).
    notes: tuple[str, ...] = ()

    @property
    def failed(self) -> int:
        """How many files did not land."""
        return len(self.failures)

    def line(self) -> str:
        """One line for a terminal."""
        retried = f" ({len(self.notes)} after a retry)" if self.notes else ""
        return (
            f"{self.uploaded} uploaded{retried}, {self.skipped} already there (skipped), "
            f"{self.failed} failed in {self.seconds:.1f} s"
        )


def upload_url_for(index_url: str) -> str:
    """Where uploads go for a simple index URL: the URL without its last ``simple/`` or
    ``+simple/`` segment (pypiserver ``/simple/`` -> ``/``, devpi ``/u/i/+simple/`` ->
    ``/u/i/``, Artifactory ``/api/pypi/repo/simple/`` -> ``/api/pypi/repo/``)."""
    base = index_base(index_url)
    return re.sub(r"\+?simple/$", "", base)


def distributions(directory: Path) -> list[Path]:
    """The distribution files in ``directory`` (wheels and sdists), sorted."""
    return sorted(p for p in directory.iterdir() if p.is_file() and _DIST_RE.match(p.name))


def upload_files(
    index_url: str,
    files: Sequence[Path],
    *,
    credentials: BasicAuth | None,
    upload_url: str | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    timeout: float = DEFAULT_TIMEOUT_S,
    progress: Callable[[FileResult], None] | None = None,
    backoff_s: Sequence[float] = DEFAULT_BACKOFF_S,
) -> UploadSummary:
    """Upload ``files`` to the index at ``index_url`` (its simple URL), skipping those there.

    A file that timed out or was reset is retried after each of ``backoff_s``, once the
    project's listing says the index does not have it (``pipstorm.packages.retry``).
    ``progress`` is called once per file, from worker threads, as soon as it is settled.
    UploadError when the index cannot be used at all (its listing asks for credentials that
    were not given or were refused, the URL is not http(s)).
    """
    started = time.monotonic()
    for given in (index_url, upload_url or ""):
        if urlsplit(given).username or urlsplit(given).password:  # never quoted, never sent
            raise UploadError(
                f"an index URL must not carry credentials; set {USERNAME_ENV}/{PASSWORD_ENV}"
            )
    if urlsplit(index_url).scheme not in ("http", "https") or not urlsplit(index_url).hostname:
        raise UploadError(f"index URL must be http(s)://host/...: {index_url!r}")
    if concurrency < 1:
        raise UploadError(f"concurrency must be >= 1: {concurrency}")
    index = index_base(index_url)
    client = IndexClient(credentials, timeout, index)
    project_of: dict[Path, str] = {}
    for path in files:
        match = _DIST_RE.match(path.name)
        if match is None:
            raise UploadError(f"not a distribution file name: {path.name}")
        project_of[path] = canonical_name(match.group("name"))
    projects = sorted(set(project_of.values()))
    target = upload_url or upload_url_for(index)
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="upload") as pool:
        listed = pool.map(lambda project: client.existing(f"{index}{project}/"), projects)
        present = dict(zip(projects, listed, strict=True))

        def settle(path: Path) -> FileResult:
            if path.name in present[project_of[path]]:
                result = FileResult(path, "skipped")
            else:
                result = send_with_retries(
                    lambda: client.upload(target, path),
                    lambda: path.name in client.existing(f"{index}{project_of[path]}/"),
                    landed=_landed,
                    noted=_noted,
                    backoff_s=backoff_s,
                )
            if progress is not None:
                progress(result)
            return result

        results = list(pool.map(settle, files))
    return UploadSummary(
        uploaded=sum(r.outcome == "uploaded" for r in results),
        skipped=sum(r.outcome == "skipped" for r in results),
        failures=tuple(r for r in results if r.outcome == "failed"),
        seconds=time.monotonic() - started,
        notes=tuple(
            f"{r.path.name}: {r.detail}" for r in results if r.detail and r.outcome != "failed"
        ),
    )


def _landed(failed: FileResult) -> FileResult:
    """The index lists a file whose upload got no answer: it arrived."""
    return FileResult(
        failed.path, "uploaded", detail=f"arrived; its answer was lost ({failed.detail})"
    )


def _noted(result: FileResult, note: str) -> FileResult:
    return replace(result, detail=f"{result.detail} ({note})" if result.detail else note)


@dataclass(frozen=True)
class Page:
    """An index's answer to a GET: status, content type, body, the URL after redirects."""

    status: int
    content_type: str
    body: bytes
    url: str


class IndexClient:
    """HTTP with urllib: Basic auth to the index's origin only; no proxy for loopback."""

    def __init__(self, credentials: BasicAuth | None, timeout: float, index: str) -> None:
        self.credentials = credentials
        self.timeout = timeout
        self._index_origin = _origin(index)
        handlers: list[urllib.request.BaseHandler] = [_NoRedirectAuth(self._index_origin)]
        if urlsplit(index).hostname in _LOOPBACK:
            handlers.append(urllib.request.ProxyHandler({}))
        self._opener = urllib.request.build_opener(*handlers)

    def _headers(self, url: str) -> dict[str, str]:
        headers = {"User-Agent": _USER_AGENT}
        if self.credentials is not None and _origin(url) == self._index_origin:
            headers["Authorization"] = self.credentials.basic_auth_header()
        return headers

    def fetch(self, url: str) -> Page:
        """GET a simple-API page (JSON preferred, HTML accepted); an HTTP error status is a
        Page too. UploadError (one line) when the index cannot be reached at all."""
        headers = {**self._headers(url), "Accept": _ACCEPT}
        request = urllib.request.Request(url, headers=headers)  # noqa: S310 - http(s) checked
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                return Page(
                    response.status,
                    response.headers.get("Content-Type", ""),
                    response.read(),
                    response.geturl(),
                )
        except urllib.error.HTTPError as exc:
            with exc:  # its socket, else a ResourceWarning when it is collected
                body = exc.read()
            return Page(exc.code, exc.headers.get("Content-Type", ""), body, url)
        except (urllib.error.URLError, OSError) as exc:
            raise UnreachableError(url, getattr(exc, "reason", exc)) from None

    def existing(self, project_url: str) -> set[str]:
        """The file names the index lists for a project (empty when it has none)."""
        page = self.fetch(project_url)
        if page.status == 404:
            return set()
        if page.status in (401, 403):
            raise UploadError(
                credentials_hint(page.status, project_url, given=self.credentials is not None)
            )
        if page.status != 200:
            raise UploadError(f"the index answered {page.status} to {project_url}")
        return listed_files(page.body, page.content_type, page.url)

    def upload(self, url: str, path: Path) -> FileResult:
        """POST one file; 2xx uploaded, 409 skipped (already there), anything else failed."""
        try:
            fields = metadata_fields(path)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, tarfile.TarError) as exc:
            return FileResult(path, "failed", detail=f"unreadable: {exc}")
        boundary = secrets.token_hex(16)
        body = multipart_body(fields, path, boundary)
        headers = {
            **self._headers(url),
            "Content-Type": f"multipart/form-data; boundary={boundary}",
        }
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                response.read()
                return FileResult(path, "uploaded", response.status)
        except urllib.error.HTTPError as exc:
            with exc:
                detail = _short(exc.read())
            if exc.code == 409:
                return FileResult(path, "skipped", 409, detail)
            transient = exc.code in TRANSIENT_STATUSES
            return FileResult(path, "failed", exc.code, detail or str(exc.reason), transient)
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            # No (whole) answer: a timeout, a reset, a connection refused or cut mid-answer.
            reason = str(getattr(exc, "reason", exc)) or type(exc).__name__
            return FileResult(path, "failed", None, reason, transient=True)


def credentials_hint(status: int, url: str, *, given: bool) -> str:
    """The one line for an index that wants other credentials (never the credentials)."""
    hint = "wrong credentials" if given else f"set {USERNAME_ENV}/{PASSWORD_ENV}"
    return f"index {url} refused access (HTTP {status}): {hint}"


class _NoRedirectAuth(urllib.request.HTTPRedirectHandler):
    """Follows redirects but drops Authorization when one leaves the index's origin."""

    def __init__(self, origin: str) -> None:
        super().__init__()
        self.origin = origin

    def redirect_request(  # noqa: PLR0917 - urllib's signature
        self,
        req: urllib.request.Request,
        fp: object,
        code: int,
        msg: str,
        headers: object,
        newurl: str,
    ) -> urllib.request.Request | None:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)  # type: ignore[arg-type]
        if new is not None and _origin(newurl) != self.origin:
            new.remove_header("Authorization")
        return new


def _origin(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}"


def _short(body: bytes) -> str:
    text = " ".join(body.decode("utf-8", "replace").split())
    return re.sub(r"<[^>]+>", "", text)[:200]
