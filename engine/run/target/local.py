"""An index on this machine that pipstorm did not start: which process serves it.

A target given as ``--index-url http://127.0.0.1:PORT/...`` (a static index, a pypiserver the
user started) runs on the generator's own CPUs: clients that starve it of CPU make its latency
the generator's, exactly as with the embedded target. The generator rule
(``pipstorm.engine.analysis.generator.cpu_wait``) can only tell when that process's run-queue
wait is sampled, so the process listening on the URL's port is looked up once, at the start of
the run, and sampled as the run's ``target`` group. It is only watched: its priority is not
pipstorm's to change (the embedded target's is: ``pipstorm.engine.run.priority``). When no
listener is found (another user's process, no permission), the target counts as local and
unwatched, and the rule falls back to the host's CPU.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

import psutil

_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def is_loopback_url(url: str | None) -> bool:
    """Whether ``url``'s host is this machine's loopback (a name or a 127/8 or ::1 address)."""
    if not url:
        return False
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return False
    if host is None:
        return False
    if host.lower() in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def url_port(url: str) -> int | None:
    """The URL's port (the scheme's default when none is written), None when unreadable."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if port is not None:
        return port
    return {"http": 80, "https": 443}.get(parts.scheme)


def listener_pid(port: int) -> int | None:
    """The pid of the process listening on TCP ``port`` on loopback or any address; None when
    none is visible (psutil only sees the sockets of processes this user may inspect)."""
    try:
        connections = psutil.net_connections(kind="tcp")
    except (psutil.AccessDenied, OSError):
        return None
    for conn in connections:
        if conn.status != psutil.CONN_LISTEN or conn.pid is None or not conn.laddr:
            continue
        if conn.laddr.port != port:
            continue
        address = ipaddress.ip_address(conn.laddr.ip.split("%")[0])
        if address.is_loopback or address.is_unspecified:
            return conn.pid
    return None


def local_target_pid(index_url: str | None) -> int | None:
    """The pid serving a loopback ``index_url``, or None (not loopback, or not found)."""
    if index_url is None or not is_loopback_url(index_url):
        return None
    port = url_port(index_url)
    return None if port is None else listener_pid(port)
