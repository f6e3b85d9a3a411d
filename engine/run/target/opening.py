"""Which index a run loads, and the checks made before any load is sent to it.

The embedded target is a corpus plus a local pypiserver on 127.0.0.1. A remote target is an
index URL with credentials from ``PYPI_USERNAME``/``PYPI_PASSWORD`` (the seed's names), never
from argv. Load goes only to loopback addresses unless the user says, in so many words, that the
index is theirs to load (``--allow-remote-target``).

``--target`` names the index in one option: ``terraform:DIR`` (a deployed Terraform root: URL,
credentials and CloudWatch dimensions from its outputs, ``pipstorm.infra.aws``), ``url:URL`` (the
same as ``--index-url URL``) or ``embedded``.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from pipstorm.engine.errors import UsageError
from pipstorm.infra.aws.stack import AwsStack
from pipstorm.infra.aws.terraform_outputs import read_stack
from pipstorm.infra.credentials import Credentials, CredentialsError
from pipstorm.infra.proxy.rewrite import Origin, parse_origins
from pipstorm.infra.pypiserver.probe import ListingCost, probe_listing_cost
from pipstorm.infra.pypiserver.sizing import Sizing
from pipstorm.infra.pypiserver.target import LocalPypiserver, TargetError
from pipstorm.packages.cache import cached_corpus
from pipstorm.packages.index_check import check_corpus
from pipstorm.packages.index_url import index_base
from pipstorm.packages.spec import CorpusSpec, wheel_filename

USERNAME_VAR = "PYPI_USERNAME"
PASSWORD_VAR = "PYPI_PASSWORD"  # noqa: S105 - the name of a variable, not a password
PREFLIGHT_TIMEOUT_S = 10.0
TARGET_FORMS = "terraform:DIR, url:URL or embedded"


class TargetSetupError(UsageError):
    """The target cannot be used; the message is one line naming the problem."""


@dataclass(frozen=True)
class Target:
    """An index ready to be loaded: its URL, the credentials the proxy adds, what it is."""

    kind: str  # "embedded" or "remote"
    index_url: str
    credentials: Credentials | None
    corpus: CorpusSpec
    server_pid: int | None = None
    stack: AwsStack | None = None  # a target read from Terraform outputs: CloudWatch can be asked
    #: The embedded server itself: watched for an early death during the run, and its cgroup
    #: sampled when it is sized.
    server: LocalPypiserver | None = None
    #: What one listing costs the sized server, when asked for (the sizing lab).
    listing_cost: ListingCost | None = None

    def sizing_record(self) -> dict[str, object]:
        """run.json's ``target`` entries for a sized server: sizing, cgroup, why unconfined."""
        server = self.server
        if server is None or server.sizing is None:
            return {}
        cgroup = server.cgroup
        record: dict[str, object] = {
            "sizing": server.sizing.as_record(),
            "cgroup": None
            if cgroup is None
            else {"version": cgroup.version, "name": cgroup.name, "limits": cgroup.limits()},
            "unconfined_reason": server.unconfined_reason,
        }
        if self.listing_cost is not None:
            record["listing_cost"] = self.listing_cost.as_record()
        return record


@dataclass(frozen=True)
class TargetSpec:
    """What ``--target``/``--index-url`` asked for: a URL, a Terraform root, or neither
    (the embedded target)."""

    index_url: str | None = None
    terraform_dir: Path | None = None

    @property
    def embedded(self) -> bool:
        """Neither a URL nor a Terraform root: the embedded pypiserver."""
        return self.index_url is None and self.terraform_dir is None


@dataclass(frozen=True)
class CheckedTarget:
    """A ``TargetSpec`` that passed the loopback gate (``check_target``, the only maker): the
    index URL as given, or the stack a Terraform root names; neither for the embedded target.
    ``open_target`` takes only this, so no index is loaded before it was checked."""

    index_url: str | None = None
    stack: AwsStack | None = None


def parse_target(target: str | None, index_url: str | None = None) -> TargetSpec:
    """``--target`` and ``--index-url`` as one ``TargetSpec``; both at once is a usage error."""
    if target is not None and index_url is not None:
        raise TargetSetupError("--target and --index-url both name the index: give one of them")
    if target is None or target == "embedded":
        return TargetSpec(index_url=index_url)
    kind, sep, value = target.partition(":")
    if sep and kind == "terraform" and value:
        return TargetSpec(terraform_dir=Path(value))
    if sep and kind == "url" and value:
        return TargetSpec(index_url=value)
    raise TargetSetupError(f"--target must be {TARGET_FORMS}, got {target!r}")


def resolve_stack(spec: TargetSpec) -> AwsStack | None:
    """The deployed stack a ``terraform:DIR`` target names (runs ``terraform output``)."""
    return None if spec.terraform_dir is None else read_stack(spec.terraform_dir)


def check_target(spec: TargetSpec, *, allow_remote: bool) -> CheckedTarget:
    """Read the stack a ``terraform:DIR`` target names and refuse an index that is not on a
    loopback address (unless ``allow_remote``): once per command, before anything else."""
    stack = resolve_stack(spec)
    url = stack.index_url if stack is not None else spec.index_url
    if url is not None:
        check_loopback(url, allow_remote=allow_remote)
    return CheckedTarget(index_url=None if stack is not None else spec.index_url, stack=stack)


#: The embedded target: nothing to check.
EMBEDDED = CheckedTarget()


def check_loopback(index_url: str, *, allow_remote: bool) -> None:
    """Refuse a URL whose host resolves to anything but loopback, unless explicitly allowed."""
    parts = urlsplit(index_url)
    # Credentials first: the other messages quote the URL.
    if parts.username or parts.password:
        raise TargetSetupError(
            f"--index-url must not carry credentials; set {USERNAME_VAR}/{PASSWORD_VAR} instead"
        )
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetSetupError(f"--index-url must be an http(s) URL, got {index_url!r}")
    if allow_remote:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise TargetSetupError(f"cannot resolve index host {parts.hostname!r}: {exc}") from exc
    addresses = {str(info[4][0]) for info in infos}
    if not all(ipaddress.ip_address(addr.split("%")[0]).is_loopback for addr in addresses):
        raise TargetSetupError(
            f"refusing to send load to {parts.hostname} ({', '.join(sorted(addresses))}): not a "
            "loopback address; pass --allow-remote-target if the index is yours to load"
        )


def allowed_origins(texts: Collection[str], *, allow_remote: bool) -> tuple[Origin, ...]:
    """``--allow-origin`` values, parsed once: refused when one is not ``http(s)://host[:port]``,
    or not loopback without ``--allow-remote-target``, before any load."""
    try:
        origins = parse_origins(list(texts))
    except ValueError as exc:
        raise TargetSetupError(str(exc)) from None
    for origin in origins:
        check_loopback(origin.url, allow_remote=allow_remote)
    return origins


def preflight(
    index_url: str,
    credentials: Credentials | None,
    project: str,
    filenames: Collection[str] = (),
) -> None:
    """One authenticated GET of a corpus project's page, to fail fast with a clear reason:
    unreachable, refused, not a simple index (a web UI, a login page), or lacking the corpus
    (``filenames``: the corpus's files of ``project``), which names ``pipstorm corpus upload``.
    Raises ``pipstorm.packages.index_check.IndexCheckError`` (one line)."""
    check_corpus(
        index_url, project, filenames, credentials=credentials, timeout=PREFLIGHT_TIMEOUT_S
    )


def corpus_files(corpus: CorpusSpec, project: str) -> set[str]:
    """The corpus's wheel names of one project: what its listing must show."""
    return {wheel_filename(project, version) for version in corpus.versions_of(project)}


def _probe(
    corpus_dir: Path, sizing: Sizing | None, project: str, allow_unconfined: bool
) -> ListingCost | None:
    """What one listing costs the sized server (None unsized, or unconfined and allowed)."""
    if sizing is None:
        return None
    try:
        return probe_listing_cost(corpus_dir, sizing, project)
    except TargetError:
        if not allow_unconfined:
            raise  # the server would fail the same way: say it once, here
        return None


@contextmanager
def open_target(
    checked: CheckedTarget,
    *,
    corpus: CorpusSpec,
    log_path: Path | None,
    upload_dir: Path | None = None,
    sizing: Sizing | None = None,
    allow_unconfined: bool = False,
    probe_listing: bool = False,
    remote_files: Callable[[str], Collection[str]] | None = None,
    temp_root: Path | None = None,
) -> Iterator[Target]:
    """The embedded target (started here, stopped on exit) or the remote one, checked.

    ``checked``: what ``check_target`` let through (a stack's URL and credentials, or a URL
    with credentials from the environment, or the embedded target). ``upload_dir``: where the
    embedded target stores uploads (never the corpus cache). ``sizing``: run the embedded
    target like the production image, confined (``pipstorm.infra.pypiserver.sizing``);
    ``allow_unconfined`` lets it run without limits when there are no cgroups;
    ``probe_listing``: first measure what one listing costs it
    (``pipstorm.infra.pypiserver.probe``); ``temp_root``: where the embedded server's private
    folder (its htpasswd) is made, a folder reaped even if pipstorm is SIGKILLed
    (``pipstorm.engine.run.reaper.guarded_folder``), else the system's temp folder."""
    first_project = corpus.project_names()[0]
    # A remote index's files of the first project, as its listing must show them: the corpus's
    # wheel names, or (``remote_files``: ``pipstorm replay``) the file names a log showed.
    remote_first = (remote_files or (lambda p: corpus_files(corpus, p)))(first_project)
    index_url, stack = checked.index_url, checked.stack
    if sizing is not None and (stack is not None or index_url is not None):
        raise TargetSetupError("--sizing sizes the embedded target; drop it or the --target")
    if stack is not None:
        normalized = index_base(stack.index_url)
        preflight(normalized, stack.credentials, first_project, remote_first)
        yield Target(
            kind="remote",
            index_url=normalized,
            credentials=stack.credentials,
            corpus=corpus,
            stack=stack,
        )
        return
    if index_url is None:
        built = cached_corpus(corpus)
        probed = probe_listing and sizing is not None
        cost = _probe(built.directory, sizing, first_project, allow_unconfined) if probed else None
        server = LocalPypiserver(
            built.directory,
            log_path=log_path,
            upload_dir=upload_dir,
            sizing=sizing,
            allow_unconfined=allow_unconfined,
            temp_root=temp_root,
        )
        with server:
            preflight(
                server.index_url,
                server.credentials,
                first_project,
                corpus_files(corpus, first_project),
            )
            yield Target(
                kind="embedded",
                index_url=server.index_url,
                credentials=server.credentials,
                corpus=corpus,
                server_pid=server.pid,
                server=server,
                listing_cost=cost,
            )
        return
    try:
        credentials = Credentials.from_env(os.environ, USERNAME_VAR, PASSWORD_VAR)
    except CredentialsError as exc:
        raise TargetSetupError(f"{USERNAME_VAR}/{PASSWORD_VAR}: {exc}") from exc
    normalized = index_base(index_url)
    preflight(normalized, credentials, first_project, remote_first)
    yield Target(kind="remote", index_url=normalized, credentials=credentials, corpus=corpus)
