"""The infra layer's error base: a server, the proxy, a fault rule or credentials that cannot be
used as given. Each message is one line naming the problem; the CLI turns any
:class:`InfraError` into one ``ERROR:`` line and exit code 2."""

from __future__ import annotations


class InfraError(Exception):
    """Something the infra layer was asked cannot be done or used."""
