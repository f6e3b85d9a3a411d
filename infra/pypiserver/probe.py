"""What one listing costs the server, with and without its auth hash and its file hashing.

The sizing lab names the cause of a failing sizing. Two causes are the server's configuration
rather than its size, and neither shows in latency alone:

- auth-hash-bound: pypiserver checks the htpasswd hash on every request (no session), so a
  bcrypt cost of 12 spends ~0.2 CPU-s per request, ~200 times an apr1 check;
- hash-bound: the ``simple-dir`` backend re-hashes (sha256) every file of the project on each
  listing, so listing CPU grows with files per project and with their size.

A probe starts a fresh server per variant (the sizing as given, ``--auth none``,
``--hash-algo off``) without a CPU quota, so it is quick even for bcrypt, and reads the CPU
each listing costs from the cgroup's counter: the cost of one request, not of the run's load.
"""

from __future__ import annotations

import http.client
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from pipstorm.infra.pypiserver.counters import read_counters
from pipstorm.infra.pypiserver.sizing import Sizing
from pipstorm.infra.pypiserver.target import LocalPypiserver, TargetError

PROBE_REQUESTS = 5


@dataclass(frozen=True)
class ListingCost:
    """Server CPU seconds per authenticated listing of one project, three ways."""

    as_sized: float
    without_auth: float
    without_hashing: float

    @property
    def auth_share(self) -> float:
        """The part of a listing's CPU spent checking the password (0..1)."""
        return _share(self.as_sized - self.without_auth, self.as_sized)

    @property
    def hashing_share(self) -> float:
        """The part of a listing's CPU spent hashing the project's files (0..1)."""
        return _share(self.as_sized - self.without_hashing, self.as_sized)

    def as_record(self) -> dict[str, Any]:
        """The JSON form, shares included."""
        record: dict[str, Any] = asdict(self)
        record["auth_share"] = round(self.auth_share, 3)
        record["hashing_share"] = round(self.hashing_share, 3)
        return record


def _share(part: float, whole: float) -> float:
    return min(1.0, max(0.0, part / whole)) if whole > 0 else 0.0


def probe_listing_cost(
    package_dir: Path, sizing: Sizing, project: str, *, requests: int = PROBE_REQUESTS
) -> ListingCost:
    """Measure a listing of ``project`` under ``sizing`` and its two lighter variants.

    Raises ``TargetError`` when the server cannot be confined (a probe needs the cgroup's
    counter) or does not serve the project.
    """
    probe = replace(sizing, cpus=None, workers=1)
    return ListingCost(
        as_sized=_cpu_per_listing(package_dir, probe, project, requests),
        without_auth=_cpu_per_listing(package_dir, replace(probe, auth="none"), project, requests),
        without_hashing=_cpu_per_listing(
            package_dir, replace(probe, hash_algo="off"), project, requests
        ),
    )


def _cpu_per_listing(package_dir: Path, sizing: Sizing, project: str, requests: int) -> float:
    with LocalPypiserver(package_dir, sizing=sizing) as server:
        if server.cgroup is None:
            raise TargetError("the listing probe needs a cgroup to read the server's CPU from")
        auth = server.credentials.basic_auth_header()
        _listing(server, project, auth)  # warm: the first request imports and fills caches
        before = read_counters(server.cgroup).cpu_s
        for _ in range(requests):
            _listing(server, project, auth)
        return round((read_counters(server.cgroup).cpu_s - before) / requests, 5)


def _listing(server: LocalPypiserver, project: str, auth: str) -> None:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=60)
    try:
        conn.request("GET", f"/simple/{project}/", headers={"Authorization": auth})
        response = conn.getresponse()
        response.read()
    finally:
        conn.close()
    if response.status != 200:
        raise TargetError(f"the listing probe got HTTP {response.status} for /simple/{project}/")
