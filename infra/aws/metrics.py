"""The server-side series pipstorm reads from CloudWatch, and the window a run asks for.

The seed watched ECS memory and EFS burst credits with ``aws cloudwatch get-metric-statistics``
loops in a second terminal; the module's dashboard shows the same namespaces. These nine are the
ones that explain a load test's latency: a container out of memory or CPU, an EFS out of burst
credits or I/O, an ALB whose targets answer slowly, fail or drop out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class MetricSpec:
    """One CloudWatch series: where it lives, how it is aggregated per period, its dimensions.

    ``key`` is the GetMetricData query id and the name in cloudwatch.jsonl and reports (ids must
    start with a lowercase letter). ``dimensions`` pairs each CloudWatch dimension name with the
    ``StackDimensions`` field that holds its value.
    """

    key: str
    namespace: str
    name: str
    stat: str
    unit: str
    dimensions: tuple[tuple[str, str], ...]
    why: str

    @property
    def label(self) -> str:
        """A short human label: ``AWS/ECS MemoryUtilization (Average, %)``."""
        return f"{self.namespace} {self.name} ({self.stat}, {self.unit})"


_ECS: Final = (("ClusterName", "ecs_cluster_name"), ("ServiceName", "ecs_service_name"))
_EFS: Final = (("FileSystemId", "efs_file_system_id"),)
_ALB: Final = (("LoadBalancer", "alb_arn_suffix"),)
_TARGET_GROUP: Final = (
    ("TargetGroup", "target_group_arn_suffix"),
    ("LoadBalancer", "alb_arn_suffix"),
)

METRICS: Final[tuple[MetricSpec, ...]] = (
    MetricSpec("ecs_cpu", "AWS/ECS", "CPUUtilization", "Average", "%", _ECS,
               "service CPU against its reservation"),
    MetricSpec("ecs_memory", "AWS/ECS", "MemoryUtilization", "Average", "%", _ECS,
               "service memory against its reservation: near 100% means OOM kills"),
    MetricSpec("efs_burst_credits", "AWS/EFS", "BurstCreditBalance", "Average", "bytes", _EFS,
               "bursting EFS slows to its baseline when these run out"),
    MetricSpec("efs_percent_io_limit", "AWS/EFS", "PercentIOLimit", "Maximum", "%", _EFS,
               "how close the file system is to its I/O limit"),
    MetricSpec("efs_client_connections", "AWS/EFS", "ClientConnections", "Sum", "count", _EFS,
               "NFS connections: one per container instance mount"),
    MetricSpec("alb_target_response_time", "AWS/ApplicationELB", "TargetResponseTime",
               "Average", "s", _ALB, "time the targets took, as the ALB saw it"),
    MetricSpec("alb_request_count", "AWS/ApplicationELB", "RequestCount", "Sum", "count", _ALB,
               "requests the ALB routed: compare with the proxy's count"),
    MetricSpec("alb_target_5xx", "AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", "Sum",
               "count", _ALB, "server errors pypiserver itself returned"),
    MetricSpec("alb_unhealthy_hosts", "AWS/ApplicationELB", "UnHealthyHostCount", "Maximum",
               "count", _TARGET_GROUP, "targets failing health checks (restarting containers)"),
)  # fmt: skip
METRIC_KEYS: Final = tuple(spec.key for spec in METRICS)
DEFAULT_PERIOD_S: Final = 60


def metric_spec(key: str) -> MetricSpec:
    """The spec of one series by key; KeyError names the known keys."""
    for spec in METRICS:
        if spec.key == key:
            return spec
    raise KeyError(f"unknown CloudWatch series {key!r}; known: {', '.join(METRIC_KEYS)}")


@dataclass(frozen=True)
class MetricWindow:
    """The time range asked of CloudWatch: the run, padded by a period on each side, aligned.

    Aligned to the period so every datapoint covers a whole period; padded because CloudWatch
    stamps a datapoint with the start of its period, so the period holding the run's first
    request starts before the run, and one after its end catches late-published points.
    """

    start: float
    end: float
    period: int

    @classmethod
    def around(
        cls, run_start: float, run_end: float, period: int = DEFAULT_PERIOD_S
    ) -> MetricWindow:
        """The window for a run from ``run_start`` to ``run_end`` (epoch seconds)."""
        if period <= 0 or (period % 60 and period not in (1, 5, 10, 30)):
            raise ValueError(
                f"CloudWatch period must be 1, 5, 10, 30 or a multiple of 60, got {period}"
            )
        start = math.floor((run_start - period) / period) * period
        # The period holding the run's last instant, then one more.
        end = (math.floor(max(run_end, run_start) / period) + 2) * period
        return cls(start=float(start), end=float(end), period=period)
