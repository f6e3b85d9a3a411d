"""How big the embedded pypiserver is: presets that are the seed module's deployments, and knobs.

The seed's users learnt sizing by deploying to AWS twice. A ``Sizing`` lets pipstorm tell the
same story on one machine: pypiserver runs like the production image (gunicorn, the module's
``files/gunicorn.conf.py``: ``preload_app``, gevent workers; ``--backend simple-dir``; auth on
download, list and update) and is confined by cgroups to the CPU and memory the deployment has.

A preset is a deployment (``pipstorm.infra.pypiserver.deployments``: the module's formulas over
an instance type and a ``container_memory``), played as one gunicorn:

- cpus: every vCPU of its instances (ECS CPU units are weights between tasks, and a T3 launched
  by the module's template runs in ``unlimited`` credit mode: never held to its baseline share);
- workers: tasks x the module's workers per task;
- memory: the tasks' hard limits (``container_memory`` each), as far as the host leaves them;
- auth: the deployed htpasswd line is Terraform's ``random_password.bcrypt_hash``, bcrypt at Go's
  ``bcrypt.DefaultCost``, 10: ``bcrypt:10``, the default of every sized target here;
- backend ``simple-dir`` and pypiserver's default ``--hash-algo sha256``.

``scaled(K)`` divides the capacity by K, so that a deployment bigger than this machine can be
played against a profile with 1/K of its clients (``sizing-lab --scale``).
"""

from __future__ import annotations

import logging
import math
import re
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Final, TypedDict, Unpack

from pipstorm.infra.credentials import Credentials
from pipstorm.infra.errors import InfraError
from pipstorm.infra.pypiserver.deployments import Deployment

WORKER_CLASSES: Final = ("gevent", "sync", "gthread")
HASH_ALGOS: Final = ("sha256", "off")
BACKENDS: Final = ("simple-dir", "cached-dir")
AUTH_KINDS: Final = ("none", "apr1", "bcrypt")
#: passlib's bcrypt accepts costs 4..31; above 16 a single request takes seconds.
BCRYPT_COST_RANGE: Final = (4, 20)
MIN_MEMORY_BYTES: Final = 16 * 2**20
MAX_CPUS: Final = 64.0
#: The module's htpasswd: Terraform's random_password.bcrypt_hash, Go's bcrypt.DefaultCost (10).
DEPLOYED_AUTH: Final = "bcrypt:10"
MAX_SCALE: Final = 64


class SizingKnobs(TypedDict, total=False):
    """The seven knobs that change a sizing (``--cpus``, ``--memory``, ``--server-workers``,
    ``--worker-class``, ``--auth``, ``--hash-algo``, ``--backend``), declared once: the CLI
    and the sizing lab name them by these keys. None keeps the value it would change."""

    cpus: float | None
    memory: str | None  # e.g. 128M, 1G (``parse_memory``)
    workers: int | None
    worker_class: str | None
    auth: str | None
    hash_algo: str | None
    backend: str | None


#: The knobs' names, in the order the CLI lists them.
KNOB_NAMES: Final = tuple(SizingKnobs.__annotations__)


class SizingError(InfraError):
    """A sizing name or knob value that cannot be used; the message is one line."""


@dataclass(frozen=True)
class Sizing:
    """Everything that decides the embedded server's capacity, recorded with the run.

    ``cpus`` and ``memory_bytes`` are the cgroup limits (None: not limited); the rest is how
    pypiserver and gunicorn are started. ``name`` is the preset it came from (``custom`` when no
    preset was named), ``instance`` the AWS instance the preset stands for, ``deployment`` the
    module's figures it was derived from, ``scale`` the K its capacity was divided by.
    """

    name: str
    cpus: float | None
    memory_bytes: int | None
    workers: int
    worker_class: str = "gevent"
    auth: str = DEPLOYED_AUTH  # none | apr1 | bcrypt:COST
    hash_algo: str = "sha256"
    backend: str = "simple-dir"
    instance: str | None = None
    deployment: Mapping[str, Any] | None = field(default=None, compare=False)
    scale: int = 1

    def __post_init__(self) -> None:
        if self.cpus is not None and not 0.01 <= self.cpus <= MAX_CPUS:
            raise SizingError(f"--cpus must be between 0.01 and {MAX_CPUS:g}, got {self.cpus:g}")
        if self.memory_bytes is not None and self.memory_bytes < MIN_MEMORY_BYTES:
            raise SizingError(f"--memory must be at least 16M, got {self.memory_bytes} bytes")
        if not 1 <= self.workers <= 64:
            raise SizingError(f"--workers must be between 1 and 64, got {self.workers}")
        if not 1 <= self.scale <= MAX_SCALE:
            raise SizingError(f"--scale must be between 1 and {MAX_SCALE}, got {self.scale}")
        _check_choice("--worker-class", self.worker_class, WORKER_CLASSES)
        _check_choice("--hash-algo", self.hash_algo, HASH_ALGOS)
        _check_choice("--backend", self.backend, BACKENDS)
        parse_auth(self.auth)

    @property
    def confined(self) -> bool:
        """Whether this sizing asks for any cgroup limit at all."""
        return self.cpus is not None or self.memory_bytes is not None

    @property
    def memory_mb(self) -> int | None:
        """The memory limit in MiB (None: unlimited)."""
        return None if self.memory_bytes is None else self.memory_bytes // 2**20

    def with_knobs(self, **knobs: Unpack[SizingKnobs]) -> Sizing:
        """This sizing with the given knobs changed (None keeps a value); renamed ``NAME+``
        when a preset is changed, so a report never calls a modified preset by its name."""
        values: dict[str, Any] = dict(knobs)
        memory = values.pop("memory", None)
        values["memory_bytes"] = parse_memory(memory) if memory is not None else None
        changes = {
            key: value
            for key, value in values.items()
            if value is not None and value != getattr(self, key)
        }
        if not changes:
            return self
        name = self.name if self.name == "custom" or self.name.endswith("+") else self.name + "+"
        return replace(self, name=name, **changes)

    def scaled(self, k: int) -> Sizing:
        """This sizing with its capacity divided by ``k``: CPU, workers (at least one) and
        memory; what one listing costs is left alone, so a profile with 1/k of the clients
        meets the same per-request queue (docs/sizing-lab.md says what this does not keep)."""
        if k == 1:
            return self
        if not 1 <= k <= MAX_SCALE:
            raise SizingError(f"--scale must be between 1 and {MAX_SCALE}, got {k}")
        return replace(
            self,
            cpus=None if self.cpus is None else round(self.cpus / k, 3),
            workers=max(1, round(self.workers / k)),
            memory_bytes=None if self.memory_bytes is None else self.memory_bytes // k,
            scale=self.scale * k,
        )

    def as_record(self) -> dict[str, Any]:
        """The JSON form for run.json and reports (figures, not prose)."""
        record = asdict(self)
        record["memory_mb"] = self.memory_mb
        record["deployment"] = None if self.deployment is None else dict(self.deployment)
        return record

    def label(self) -> str:
        """One short line: ``baseline (2 vCPU, 256 MiB, 4 gevent workers, bcrypt:10)``."""
        cpus = f"{self.cpus:g} vCPU" if self.cpus is not None else "unlimited CPU"
        memory = f"{self.memory_mb} MiB" if self.memory_mb is not None else "unlimited memory"
        scale = f", 1/{self.scale} scale" if self.scale > 1 else ""
        extras = [self.auth]
        if self.hash_algo != "sha256":
            extras.append(f"hash {self.hash_algo}")
        if self.backend != "simple-dir":
            extras.append(self.backend)
        return (
            f"{self.name} ({cpus}, {memory}, {self.workers} {self.worker_class} workers, "
            f"{', '.join(extras)}{scale})"
        )


def _check_choice(option: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise SizingError(f"{option} must be one of {', '.join(choices)}, got {value!r}")


def _preset(name: str, deployment: Deployment) -> Sizing:
    """A deployment as a sizing: all its vCPUs, tasks x workers, the tasks' memory, bcrypt:10."""
    return Sizing(
        name=name,
        cpus=float(deployment.vcpus),
        memory_bytes=deployment.memory_mb * 2**20,
        workers=deployment.workers,
        instance=deployment.label(),
        deployment=deployment.record(),
    )


_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]?)(?:i?b)?\s*$", re.IGNORECASE)
_UNITS: Final = {"k": 2**10, "m": 2**20, "g": 2**30, "": 2**20}


def parse_memory(text: str) -> int:
    """``128M``, ``512MiB``, ``1G``, ``1.5g`` or a bare number of MiB, in bytes."""
    match = _MEMORY.match(text)
    if match is None:
        raise SizingError(f"--memory must look like 128M, 1G or 512 (MiB), got {text!r}")
    number, unit = match.groups()
    return int(float(number) * _UNITS[unit.lower()])


def parse_auth(text: str) -> tuple[str, int | None]:
    """``none``, ``apr1`` or ``bcrypt:COST`` -> (kind, cost)."""
    kind, _, cost_text = text.partition(":")
    if kind not in AUTH_KINDS or (kind == "bcrypt") != bool(cost_text):
        raise SizingError(f"--auth must be none, apr1 or bcrypt:COST, got {text!r}")
    if kind != "bcrypt":
        return kind, None
    low, high = BCRYPT_COST_RANGE
    if not cost_text.isdigit() or not low <= int(cost_text) <= high:
        raise SizingError(f"bcrypt cost must be an integer from {low} to {high}, got {text!r}")
    return kind, int(cost_text)


def htpasswd_line(credentials: Credentials, auth: str) -> str | None:
    """The htpasswd line for ``auth`` (None for ``none``: pypiserver runs without auth).

    bcrypt lines use the ``$2y$`` ident, as ``htpasswd -B`` writes them.
    """
    kind, cost = parse_auth(auth)
    if kind == "none":
        return None
    # passlib 1.7.4 logs a traceback ("error reading bcrypt version") with bcrypt >= 4.1 and
    # then works: keep it out of pipstorm's output.
    logging.getLogger("passlib.handlers.bcrypt").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        # passlib 1.7.4 imports the stdlib ``crypt`` module, deprecated since Python 3.11.
        warnings.filterwarnings("ignore", "'crypt' is deprecated", DeprecationWarning)
        from passlib.hash import apr_md5_crypt, bcrypt

    if kind == "apr1":
        digest = apr_md5_crypt.hash(credentials.password)
    else:
        digest = bcrypt.using(rounds=cost, ident="2y").hash(credentials.password)
    return f"{credentials.username}:{digest}\n"


def cpu_quota_us(cpus: float, period_us: int) -> int:
    """The CFS quota for ``cpus`` vCPUs over ``period_us`` (at least the kernel's 1 ms)."""
    return max(1000, math.ceil(cpus * period_us))


#: The seed's deployments: the incident's (infra/terraform/pypiserver/baseline.tfvars), its fix
#: (optimized.tfvars), heavy_load's expectation (heavy.tfvars), and the one the module's
#: docs/SIZING.md validated under its x170 profile (2 x c6a.xlarge, 12 tasks x 4 workers).
#: One instance unless a document says how many: the incident's count is not published.
DEPLOYMENTS: Final = {
    "baseline": Deployment("t3.micro", 128),
    "optimized": Deployment("t3.small", 512),
    "heavy": Deployment("t3.medium", 1024),
    "validated": Deployment("c6a.xlarge", 512, instances=2),
}

PRESETS: Final[dict[str, Sizing]] = {
    name: _preset(name, deployment) for name, deployment in DEPLOYMENTS.items()
}


def preset(name: str) -> Sizing:
    """The named preset; a one-line error listing the names otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise SizingError(f"unknown sizing {name!r}; choose one of {', '.join(PRESETS)}") from None


def custom(workers: int) -> Sizing:
    """No preset: unconfined unless knobs add limits, production's worker settings and hash."""
    return Sizing(name="custom", cpus=None, memory_bytes=None, workers=workers)
