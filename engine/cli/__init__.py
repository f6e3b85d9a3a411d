"""The ``pipstorm`` command line: thin commands that call into the engine
(``pipstorm.engine.cli.app``)."""

from __future__ import annotations

from pipstorm.engine.cli.app import app, main

__all__ = ["app", "main"]
