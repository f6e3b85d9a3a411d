"""The seed module's deployments as figures: what its ``terraform apply`` builds, per instance type.

A sizing preset must be a deployment someone could have, not a guess, so every figure here is
either the module's own formula or AWS's published figure for the instance type, with where it
comes from. The module is infrahouse/terraform-aws-pypiserver 2.3.0 (commit d646c9c, 2026-04),
which uses infrahouse/terraform-aws-ecs 7.12.0 and, through it, infrahouse/terraform-aws-website-pod
5.17.0 for the launch template. docs/sizing-lab.md cites the lines.

- workers per task: ``max(2, min(8, floor(container_memory / 128)))`` (locals.tf 22-26);
- CPU units per task: ``workers * 150 + 40`` (locals.tf 28-37), an ECS container ``cpu``: a
  cpu.shares weight between the tasks of one instance, not a cap (ecs main.tf 66);
- memory reservation ``floor(container_memory * 0.75)`` (main.tf 17-20); tasks per instance:
  the fewer of ``floor((RAM - 300 - 500) / reservation)`` and ``floor((vCPUs * 1024 - 128) /
  cpu)``, at least 1 (main.tf 4-38); ``task_min_count`` = that times the instances (main.tf 41-49),
  ``task_max_count`` twice that (main.tf 51-53);
- CPU credits: the launch template (website-pod asg.tf 72-120) sets no ``credit_specification``,
  so a T3 launches in AWS's default for T3, ``unlimited``: it may run all its vCPUs for as long as
  it likes (paying for surplus credits) and is never held to its baseline share.

So a deployment's CPU is all the vCPUs of its instances (the tasks' weights only split them), its
workers are tasks x workers per task, and its memory is the tasks' hard limits
(``container_memory`` each, ecs main.tf 67), as far as the host leaves them that much after its
own 300 MB (main.tf 5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

#: locals.tf 22-26: one worker per 128 MB of container memory, from 2 to 8.
MB_PER_WORKER: Final = 128
MIN_WORKERS: Final = 2
MAX_WORKERS: Final = 8
#: locals.tf 28-37: ECS CPU units per worker and per task.
CPU_UNITS_PER_WORKER: Final = 150
CPU_UNITS_PER_TASK: Final = 40
#: main.tf 4-6: what the module leaves the host (ECS agent, CloudWatch, OS) and its page cache.
SYSTEM_OVERHEAD_MB: Final = 300
PAGE_CACHE_MB: Final = 500
#: main.tf 17-20: the soft reservation, 75 % of the hard limit (as a fraction 3/4).
RESERVATION_NUMERATOR: Final = 3
RESERVATION_DENOMINATOR: Final = 4
#: main.tf 25-29: 1 vCPU = 1024 units; 128 units kept for the system.
CPU_UNITS_PER_VCPU: Final = 1024
SYSTEM_CPU_UNITS: Final = 128
#: AWS RunInstances CreditSpecification: "Default: standard (T2 instances) or unlimited
#: (T3/T3a/T4g instances)"; the module's launch template does not set it.
DEFAULT_T3_CREDITS: Final = "unlimited"


@dataclass(frozen=True)
class InstanceType:
    """AWS's published figures for an instance type (``aws_ec2_instance_type``'s
    ``default_vcpus`` and ``memory_size``, which the module reads: main.tf 12, 23)."""

    name: str
    vcpus: int
    memory_mib: int
    burstable: bool


INSTANCE_TYPES: Final = {
    it.name: it
    for it in (
        InstanceType("t3.micro", 2, 1024, burstable=True),
        InstanceType("t3.small", 2, 2048, burstable=True),
        InstanceType("t3.medium", 2, 4096, burstable=True),
        InstanceType("c6a.xlarge", 4, 8192, burstable=False),
    )
}


@dataclass(frozen=True)
class Deployment:
    """One module deployment: ``asg_instance_type``, ``container_memory`` and the instance count
    (``asg_min_size``); every other figure is the module's formula over these."""

    instance_type: str
    container_memory_mb: int
    instances: int = 1

    def __post_init__(self) -> None:
        if self.instance_type not in INSTANCE_TYPES:
            known = ", ".join(INSTANCE_TYPES)
            raise ValueError(f"no published figures for {self.instance_type!r} (known: {known})")
        if self.container_memory_mb < MB_PER_WORKER or self.instances < 1:
            raise ValueError("container_memory must be >= 128 MB and instances >= 1")

    @property
    def instance(self) -> InstanceType:
        """The instance type's published figures."""
        return INSTANCE_TYPES[self.instance_type]

    @property
    def workers_per_task(self) -> int:
        """locals.tf 24-26."""
        return max(MIN_WORKERS, min(MAX_WORKERS, self.container_memory_mb // MB_PER_WORKER))

    @property
    def container_cpu_units(self) -> int:
        """locals.tf 35-37: the ECS ``cpu`` of one task (a weight, not a cap)."""
        return self.workers_per_task * CPU_UNITS_PER_WORKER + CPU_UNITS_PER_TASK

    @property
    def memory_reservation_mb(self) -> int:
        """main.tf 18-20: ``floor(container_memory * 0.75)``."""
        return self.container_memory_mb * RESERVATION_NUMERATOR // RESERVATION_DENOMINATOR

    @property
    def tasks_per_instance(self) -> int:
        """main.tf 31-38: the fewer of what the RAM and the CPU units allow, at least 1."""
        available_ram = self.instance.memory_mib - SYSTEM_OVERHEAD_MB - PAGE_CACHE_MB
        by_ram = max(1, available_ram // self.memory_reservation_mb)
        available_cpu = self.instance.vcpus * CPU_UNITS_PER_VCPU - SYSTEM_CPU_UNITS
        by_cpu = max(1, available_cpu // self.container_cpu_units)
        return min(by_ram, by_cpu)

    @property
    def tasks(self) -> int:
        """main.tf 46-49: ``task_min_count``, what runs when the burst comes."""
        return self.tasks_per_instance * self.instances

    @property
    def workers(self) -> int:
        """gunicorn workers across every task."""
        return self.tasks * self.workers_per_task

    @property
    def vcpus(self) -> int:
        """Every vCPU of every instance: the tasks' weights split them, no cap holds them
        (T3 in unlimited mode, or not burstable at all)."""
        return self.instance.vcpus * self.instances

    @property
    def credit_mode(self) -> str | None:
        """``unlimited`` for a T3 (the launch template sets nothing); None: not burstable."""
        return DEFAULT_T3_CREDITS if self.instance.burstable else None

    @property
    def memory_mb(self) -> int:
        """The tasks' hard limits, as far as the host leaves them that much (per instance:
        its RAM less the module's 300 MB of system overhead)."""
        per_instance = min(
            self.tasks_per_instance * self.container_memory_mb,
            self.instance.memory_mib - SYSTEM_OVERHEAD_MB,
        )
        return per_instance * self.instances

    def label(self) -> str:
        """``2 x c6a.xlarge, 12 tasks x 4 workers``."""
        count = f"{self.instances} x " if self.instances > 1 else ""
        return (
            f"{count}{self.instance_type}, {self.tasks} task{'s' * (self.tasks > 1)} x "
            f"{self.workers_per_task} workers, container_memory {self.container_memory_mb}"
        )

    def record(self) -> dict[str, Any]:
        """The derivation, for run.json: inputs, then every figure the module computes."""
        return {
            "instance_type": self.instance_type,
            "instances": self.instances,
            "container_memory_mb": self.container_memory_mb,
            "instance_vcpus": self.instance.vcpus,
            "instance_memory_mib": self.instance.memory_mib,
            "workers_per_task": self.workers_per_task,
            "container_cpu_units": self.container_cpu_units,
            "memory_reservation_mb": self.memory_reservation_mb,
            "tasks_per_instance": self.tasks_per_instance,
            "tasks": self.tasks,
            "task_max_count": 2 * self.tasks,
            "credit_mode": self.credit_mode,
        }
