"""The ``pipstorm`` command line: thin commands that call into the engine (``engine.cli.app``)."""

from __future__ import annotations

from engine.cli.app import app, main

__all__ = ["app", "main"]
