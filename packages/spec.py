"""What a synthetic corpus is: its parameters, its names, and the key it is cached under.

A corpus is fully described by a `CorpusSpec`; everything else (project names, module names,
wheel file names, the cache key) is derived from it here, without building anything, so that
other parts of pipstorm can plan client runs against a corpus and look it up in the cache
without importing the builder.

Extending the corpus later (for example dependencies between corpus packages, with a fan-out
and a depth) means: add a field with a default here, validate it in `__post_init__`, and use
it in `pipstorm.packages.build`. `key()` hashes every field, so new corpora never collide with old
ones.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re

from poetry.core import __version__ as POETRY_CORE_VERSION

# Bump when the builder changes the bytes it writes for the same spec (file layout, module
# contents, metadata). Cached corpora built by an older format are then simply not found.
CORPUS_FORMAT = 1

# One wheel's payload is generated in memory and deflated by poetry-core; beyond this size a
# typo would exhaust memory long before it produced a useful index.
MAX_PAYLOAD_KB = 256 * 1024

# Canonical public PEP 440 versions only (no epoch, no local label, no leading zeros): the
# wheel file name, the `name==version` a client asks for and the index listing must then all
# spell a version byte for byte the same way.
_NUMBER = r"(?:0|[1-9][0-9]*)"
_VERSION_RE = re.compile(
    rf"{_NUMBER}(?:\.{_NUMBER})*(?:(?:a|b|rc){_NUMBER})?(?:\.post{_NUMBER})?(?:\.dev{_NUMBER})?"
)

# A normalized project name (PEP 503) that also makes a valid module name once `-` becomes `_`.
_PREFIX_RE = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")

# A listed project: a normalized name that is also a module name once `-` becomes `_`.
_LISTED_NAME_RE = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")

# Every wheel is pure Python; poetry-core tags it py3 because the template asks for Python 3.
WHEEL_TAG = "py3-none-any"


class CorpusError(Exception):
    """A corpus cannot be specified, built or loaded; the message is one line naming why."""


@dataclasses.dataclass(frozen=True)
class CorpusSpec:
    """The parameters of a synthetic corpus: `packages` projects, each released in `versions`.

    `payload_kb` adds a data file of that many KiB to every wheel so that downloads have a
    realistic size; the bytes are pseudo-random, so they do not compress away.

    `dep_depth` and `dep_fan_out` make corpus packages depend on each other, so resolving
    clients walk a graph as they do for real projects: projects are dealt round-robin into
    `dep_depth + 1` levels, and each project on a level above the last depends on `dep_fan_out`
    projects of the next level (any version), picked by a hash of the names. A chain is then at
    most `dep_depth` deep and the graph has no cycles. Both 0 (the default): no dependencies.
    """

    packages: int = 100
    versions: tuple[str, ...] = ("1.0.0", "1.1.0", "2.0.0")
    payload_kb: int = 0
    prefix: str = "test-package"
    dep_fan_out: int = 0
    dep_depth: int = 0
    #: Explicit ``(project, version)`` releases instead of ``packages`` x ``versions`` named
    #: after ``prefix``: a corpus made from the names an access log shows (``pipstorm replay``).
    #: Names are PEP 503-normalized; no dependencies. Empty: the generated corpus.
    listed: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        # Accept any sequence of strings (a list from a CLI or a profile) but store a tuple,
        # so that the spec stays hashable and its key does not depend on the container type.
        if isinstance(self.versions, str) or not isinstance(self.versions, tuple | list):
            raise CorpusError(f"versions must be a list of version strings, got {self.versions!r}")
        object.__setattr__(self, "versions", tuple(self.versions))
        _check_int("packages", self.packages, minimum=1)
        _check_int("payload_kb", self.payload_kb, minimum=0, maximum=MAX_PAYLOAD_KB)
        _check_int("dep_fan_out", self.dep_fan_out, minimum=0)
        _check_int("dep_depth", self.dep_depth, minimum=0)
        if (self.dep_fan_out > 0) != (self.dep_depth > 0):
            raise CorpusError(
                "dep_fan_out and dep_depth go together: both 0 (no dependencies) or both >= 1"
            )
        if self.dep_depth and self.dep_fan_out > self.packages // (self.dep_depth + 1):
            raise CorpusError(
                f"dep_fan_out {self.dep_fan_out} needs at least {self.dep_fan_out} packages on "
                f"each of {self.dep_depth + 1} levels, so packages >= "
                f"{self.dep_fan_out * (self.dep_depth + 1)} (got {self.packages})"
            )
        if not self.versions:
            raise CorpusError("versions must name at least one version")
        for version in self.versions:
            if not isinstance(version, str) or not _VERSION_RE.fullmatch(version):
                raise CorpusError(
                    f"versions: {version!r} is not a canonical version such as 1.0.0 or 2.0.0rc1"
                )
        duplicates = sorted({v for v in self.versions if self.versions.count(v) > 1})
        if duplicates:
            raise CorpusError(f"versions: {', '.join(duplicates)} listed more than once")
        self._check_listed()
        if not isinstance(self.prefix, str) or not _PREFIX_RE.fullmatch(self.prefix):
            raise CorpusError(
                f"prefix: {self.prefix!r} must be lowercase letters, digits and single dashes, "
                "starting with a letter (e.g. test-package)"
            )

    def _check_listed(self) -> None:
        """Listed releases: canonical names and versions, each once, with no dependencies."""
        if isinstance(self.listed, str) or not isinstance(self.listed, tuple | list):
            raise CorpusError(f"listed must be (project, version) pairs, got {self.listed!r}")
        pairs = tuple(tuple(pair) for pair in self.listed)
        object.__setattr__(self, "listed", pairs)
        if not pairs:
            return
        if self.has_dependencies:
            raise CorpusError("a corpus of listed releases has no dependencies")
        for pair in pairs:
            if len(pair) != 2 or not all(isinstance(part, str) for part in pair):
                raise CorpusError(f"listed: {pair!r} is not a (project, version) pair")
            project, version = pair
            if not _LISTED_NAME_RE.fullmatch(project):
                raise CorpusError(
                    f"listed: {project!r} is not a normalized project name (lowercase letters, "
                    "digits and single dashes, starting with a letter)"
                )
            if not is_canonical_version(version):
                raise CorpusError(f"listed: {project} {version!r} is not a canonical version")
        if len(set(pairs)) != len(pairs):
            raise CorpusError("listed: a release is listed more than once")

    def versions_of(self, project: str) -> list[str]:
        """The versions the corpus releases of ``project``, in order."""
        if self.listed:
            return sorted((v for p, v in self.listed if p == project), key=version_key)
        return list(self.versions)

    def project_names(self) -> list[str]:
        """Every project of the corpus, `<prefix>-000` upwards, zero-padded to one width
        (the listed releases' projects, sorted, when ``listed`` is given).

        The width is at least 3 and grows with the count, so names always sort in order.
        """
        if self.listed:
            return sorted({project for project, _ in self.listed})
        width = max(3, len(str(self.packages - 1)))
        return [f"{self.prefix}-{index:0{width}d}" for index in range(self.packages)]

    @property
    def has_dependencies(self) -> bool:
        """Whether corpus packages depend on each other (clients must then resolve)."""
        return self.dep_depth > 0

    def dependencies(self) -> dict[str, list[str]]:
        """Every project's dependencies (corpus project names, any version), deterministic."""
        names = self.project_names()
        graph: dict[str, list[str]] = {name: [] for name in names}
        if not self.has_dependencies:
            return graph
        levels = self.dep_depth + 1
        for index, name in enumerate(names):
            level = index % levels
            if level == self.dep_depth:
                continue  # the last level depends on nothing
            below = [n for i, n in enumerate(names) if i % levels == level + 1]
            below.sort(key=lambda other: hashlib.sha256(f"{name}>{other}".encode()).digest())
            graph[name] = sorted(below[: self.dep_fan_out])
        return graph

    def releases(self) -> list[tuple[str, str]]:
        """Every wheel of the corpus as `(project, version)`, project-major, versions in order."""
        return [
            (project, version)
            for project in self.project_names()
            for version in self.versions_of(project)
        ]

    def key(self) -> str:
        """A short, stable hash naming this corpus in the cache.

        It covers every field, the corpus format and the poetry-core version: poetry-core writes
        its version into each wheel, so another poetry-core gives other bytes, hence another key.
        """
        params = dataclasses.asdict(self)
        if not self.has_dependencies:
            # Corpora without dependencies keep the key they had before these fields existed.
            del params["dep_fan_out"], params["dep_depth"]
        if not self.listed:
            del params["listed"]  # generated corpora keep their keys too
        params["format"] = CORPUS_FORMAT
        params["poetry_core"] = POETRY_CORE_VERSION
        encoded = json.dumps(params, sort_keys=True, separators=(",", ":")).encode("utf-8")
        return hashlib.sha256(encoded).hexdigest()[:16]


def is_canonical_version(version: str) -> bool:
    """Whether ``version`` is spelled as the corpus spells versions (``1.0.0``, ``2.0.0rc1``)."""
    return bool(_VERSION_RE.fullmatch(version))


def version_key(version: str) -> tuple[tuple[int, ...], str]:
    """Release numbers in numeric order (``1.10.0`` after ``1.9.0``), suffixes as text."""
    release = re.match(r"[0-9.]*[0-9]", version)
    numbers = release.group(0) if release else "0"
    return tuple(int(part) for part in numbers.split(".")), version[len(numbers) :]


def canonical_name(name: str) -> str:
    """PEP 503 normalization: runs of ``-_.`` become ``-``, lowercase (a wheel's ``_`` and a
    project's ``-`` compare equal)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def module_name(project: str) -> str:
    """The import name of a corpus project: `test-package-007` -> `test_package_007`."""
    return project.replace("-", "_")


def wheel_filename(project: str, version: str) -> str:
    """The file name the builder gives the wheel of `project` at `version`."""
    return f"{module_name(project)}-{version}-{WHEEL_TAG}.whl"


def _check_int(field: str, value: object, *, minimum: int, maximum: int | None = None) -> None:
    # bool is an int subclass; `packages=True` is a mistake, not a count of one.
    if isinstance(value, bool) or not isinstance(value, int):
        raise CorpusError(f"{field} must be an integer, got {value!r}")
    if value < minimum:
        raise CorpusError(f"{field} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise CorpusError(f"{field} must be at most {maximum}, got {value}")
