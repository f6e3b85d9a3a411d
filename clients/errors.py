"""The clients layer's errors, grouped by cause. Each message is one line naming the problem.

The CLI turns any :class:`ClientsError` into one ``ERROR:`` line and exit code 2; code that
needs to tell causes apart catches a subclass. A tool that cannot be installed and a venv that
cannot be made are both a run that cannot be prepared (:class:`DriverError`).
"""

from __future__ import annotations


class ClientsError(Exception):
    """Something the clients layer was asked cannot be done."""


class UnknownClientError(ClientsError):
    """A client kind no driver answers to (``pipstorm.clients.drivers.registry`` is the one place
    that checks)."""


class DriverError(ClientsError):
    """A run could not be prepared (tool, venv, project)."""


class ToolError(DriverError):
    """A client tool (poetry, uv, twine, a pinned pip) cannot be had at that version."""


class VenvError(DriverError):
    """A throwaway virtualenv could not be made."""
