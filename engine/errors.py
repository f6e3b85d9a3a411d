"""The engine's error base: bad input or an unusable environment, said in one line.

The CLI turns a :class:`UsageError` (and the lower layers' own bases: ``pipstorm.clients.errors.
ClientsError``, ``pipstorm.infra.errors.InfraError``, ``pipstorm.packages.spec.CorpusError``) into
one ``ERROR:`` line and exit code 2. Errors are grouped by cause, not by message: each module raises
a subclass that names what it checks, and nothing above needs to know the subclass.
"""

from __future__ import annotations


class UsageError(Exception):
    """Bad input or an unusable environment; the message is one line that names the problem."""
