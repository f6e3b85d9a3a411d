"""How big the embedded pypiserver is: presets named after the seed's deployments, and knobs.

The seed's users learnt sizing by deploying to AWS twice. A ``Sizing`` lets pipstorm tell the
same story on one machine: pypiserver runs like the production image (gunicorn, the module's
``files/gunicorn.conf.py``: ``preload_app``, gevent workers) and is confined by cgroups to the
share of CPU and the memory the container would have had.

Where the preset figures come from (infrahouse/terraform-aws-pypiserver 2.3.0):

- memory: ``container_memory``, the container's hard limit (the OOM killer acts above it);
- workers: the module's ``max(2, min(8, floor(container_memory / 128)))``;
- cpus: the instance's vCPU share, i.e. its sustained baseline: every t3 size has 2 vCPUs but
  is entitled to 10 % (micro) or 20 % (small, medium) of each, 0.2 / 0.4 / 0.4 vCPU, applied
  here as a hard CFS quota. Burst credits are ignored: a t3 with credits left runs above its
  baseline (up to 2 vCPUs) until they are spent, which a sustained burst pattern does within
  the hour; the lab models the instance once they are. (The module's ECS CPU reservation,
  ``workers * 150 + 40`` units, 0.33 / 0.62 / 1.21 vCPU, is a soft cpu.shares weight among
  tasks, not a cap: try it with ``--cpus``.)
- backend ``simple-dir`` (the module's choice, see its pypiserver#449 note) and pypiserver's
  default ``--hash-algo sha256``: every listing re-hashes every file of the project.
- auth: apr1, pipstorm's default for the generated credentials. The module's own htpasswd line
  is Terraform's ``random_password.bcrypt_hash`` (bcrypt, Go's default cost 10): try it with
  ``--auth bcrypt:10`` and see the hash, not the instance, take the CPU.
"""

from __future__ import annotations

import logging
import math
import re
import warnings
from dataclasses import asdict, dataclass, replace
from typing import Any, Final

from pipstorm.infra.credentials import Credentials
from pipstorm.infra.errors import InfraError

WORKER_CLASSES: Final = ("gevent", "sync", "gthread")
HASH_ALGOS: Final = ("sha256", "off")
BACKENDS: Final = ("simple-dir", "cached-dir")
AUTH_KINDS: Final = ("none", "apr1", "bcrypt")
#: passlib's bcrypt accepts costs 4..31; above 16 a single request takes seconds.
BCRYPT_COST_RANGE: Final = (4, 20)
MIN_MEMORY_BYTES: Final = 16 * 2**20
MAX_CPUS: Final = 64.0


class SizingError(InfraError):
    """A sizing name or knob value that cannot be used; the message is one line."""


@dataclass(frozen=True)
class Sizing:
    """Everything that decides the embedded server's capacity, recorded with the run.

    ``cpus`` and ``memory_bytes`` are the cgroup limits (None: not limited); the rest is how
    pypiserver and gunicorn are started. ``name`` is the preset it came from (``custom`` when no
    preset was named), ``instance`` the AWS instance the preset stands for.
    """

    name: str
    cpus: float | None
    memory_bytes: int | None
    workers: int
    worker_class: str = "gevent"
    auth: str = "apr1"  # none | apr1 | bcrypt:COST
    hash_algo: str = "sha256"
    backend: str = "simple-dir"
    instance: str | None = None

    def __post_init__(self) -> None:
        if self.cpus is not None and not 0.01 <= self.cpus <= MAX_CPUS:
            raise SizingError(f"--cpus must be between 0.01 and {MAX_CPUS:g}, got {self.cpus:g}")
        if self.memory_bytes is not None and self.memory_bytes < MIN_MEMORY_BYTES:
            raise SizingError(f"--memory must be at least 16M, got {self.memory_bytes} bytes")
        if not 1 <= self.workers <= 64:
            raise SizingError(f"--workers must be between 1 and 64, got {self.workers}")
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

    def with_knobs(
        self,
        *,
        cpus: float | None = None,
        memory: str | None = None,
        workers: int | None = None,
        worker_class: str | None = None,
        auth: str | None = None,
        hash_algo: str | None = None,
        backend: str | None = None,
    ) -> Sizing:
        """This sizing with the given knobs changed (None keeps a value); renamed ``NAME+``
        when a preset is changed, so a report never calls a modified preset by its name."""
        changes: dict[str, Any] = {
            key: value
            for key, value in {
                "cpus": cpus,
                "memory_bytes": parse_memory(memory) if memory is not None else None,
                "workers": workers,
                "worker_class": worker_class,
                "auth": auth,
                "hash_algo": hash_algo,
                "backend": backend,
            }.items()
            if value is not None and value != getattr(self, key)
        }
        if not changes:
            return self
        name = self.name if self.name == "custom" or self.name.endswith("+") else self.name + "+"
        return replace(self, name=name, **changes)

    def as_record(self) -> dict[str, Any]:
        """The JSON form for run.json and reports (figures, not prose)."""
        record = asdict(self)
        record["memory_mb"] = self.memory_mb
        return record

    def label(self) -> str:
        """One short line: ``baseline (0.2 vCPU, 128 MiB, 2 gevent workers, apr1)``."""
        cpus = f"{self.cpus:g} vCPU" if self.cpus is not None else "unlimited CPU"
        memory = f"{self.memory_mb} MiB" if self.memory_mb is not None else "unlimited memory"
        extras = [self.auth]
        if self.hash_algo != "sha256":
            extras.append(f"hash {self.hash_algo}")
        if self.backend != "simple-dir":
            extras.append(self.backend)
        return (
            f"{self.name} ({cpus}, {memory}, {self.workers} {self.worker_class} workers, "
            f"{', '.join(extras)})"
        )


def _check_choice(option: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise SizingError(f"{option} must be one of {', '.join(choices)}, got {value!r}")


def _module_workers(memory_mb: int) -> int:
    """The seed module's default worker count for a container memory (locals.tf)."""
    return max(2, min(8, memory_mb // 128))


#: vCPUs and the sustained baseline share of each (AWS's published t3 figures).
T3_BASELINE: Final = {"t3.micro": (2, 0.10), "t3.small": (2, 0.20), "t3.medium": (2, 0.20)}


def _preset(name: str, instance: str, memory_mb: int) -> Sizing:
    workers = _module_workers(memory_mb)
    vcpus, share = T3_BASELINE[instance]
    return Sizing(
        name=name,
        cpus=round(vcpus * share, 2),
        memory_bytes=memory_mb * 2**20,
        workers=workers,
        instance=instance,
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


PRESETS: Final[dict[str, Sizing]] = {
    "baseline": _preset("baseline", "t3.micro", 128),
    "optimized": _preset("optimized", "t3.small", 512),
    "heavy": _preset("heavy", "t3.medium", 1024),
}


def preset(name: str) -> Sizing:
    """The named preset; a one-line error listing the names otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise SizingError(f"unknown sizing {name!r}; choose one of {', '.join(PRESETS)}") from None


def custom(workers: int) -> Sizing:
    """No preset: unconfined unless knobs add limits, production's worker settings."""
    return Sizing(name="custom", cpus=None, memory_bytes=None, workers=workers)
