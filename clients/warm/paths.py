"""Paths a client captured at import from the launcher's environment, found and moved (stdlib).

Part of the warm agent (``pipstorm.clients.warm.agent``). A forked child inherits module globals
computed when the launcher imported the client: pip's default ``--cache-dir`` (``USER_CACHE_DIR``,
also frozen into its option's ``partial``), poetry's ``CONFIG_DIR`` and the config defaults dict,
dulwich's credential file paths, ``site.USER_BASE``, ``sys.argv``. The launcher runs with a
template environment whose per-run paths all lie under its private ROOT, so every such value
holds ROOT: ``find_captured`` walks module globals (and dicts, lists, partials and classes in
them, to a bounded depth) once in the launcher; each child ``relocate``s them to its run's paths.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import PurePath
from typing import Any

#: Bounded walk into module globals when looking for captured launcher paths.
_SCAN_DEPTH = 3
Slot = tuple[Any, str, Any]  # (container, how: "attr"|"item", key)


def _holds(value: object, root: str) -> bool:
    return (isinstance(value, str) and root in value) or (
        isinstance(value, PurePath) and root in str(value)
    )


def _members(obj: object) -> Iterator[tuple[str, Any, Any]]:
    """(how, key, value) of what a container holds that can be put back."""
    if isinstance(obj, dict):
        for key, value in list(obj.items()):
            yield "item", key, value
    elif isinstance(obj, list):
        for index, value in enumerate(list(obj)):
            yield "item", index, value
    elif isinstance(obj, partial):
        for key, value in list(obj.keywords.items()):
            yield "kwitem", key, value
    elif isinstance(obj, type):
        for key, value in list(vars(obj).items()):
            if not key.startswith("__"):
                yield "attr", key, value


def find_captured(root: str, skip: Callable[[str], bool]) -> list[Slot]:
    """Every place in loaded modules that holds a str or path containing ``root``."""
    slots: list[Slot] = []
    seen: set[int] = set()

    def walk(container: object, depth: int) -> None:
        if id(container) in seen or depth > _SCAN_DEPTH:
            return
        seen.add(id(container))
        for how, key, value in _members(container):
            if _holds(value, root):
                target = container.keywords if isinstance(container, partial) else container
                slots.append((target, "attr" if how == "attr" else "item", key))
            elif isinstance(value, dict | list | partial | type) and not isinstance(value, str):
                if isinstance(value, type) and getattr(value, "__module__", "") != getattr(
                    container, "__name__", getattr(container, "__module__", None)
                ):
                    continue  # a class imported from elsewhere is walked in its own module
                walk(value, depth + 1)

    for name, module in list(sys.modules.items()):
        if module is None or skip(name):
            continue
        namespace = getattr(module, "__dict__", None)
        if not isinstance(namespace, dict):
            continue
        for key, value in list(namespace.items()):
            if key.startswith("__"):
                continue
            if _holds(value, root):
                slots.append((module, "attr", key))
            elif isinstance(value, dict | list | partial) or (
                isinstance(value, type) and value.__module__ == name
            ):
                walk(value, 1)
    return slots


def slot_name(slot: Slot) -> str:
    container, how, key = slot
    owner = getattr(container, "__name__", type(container).__name__)
    return f"{owner}.{key}" if how == "attr" else f"{owner}[{key!r}]"


def relocate(slots: list[Slot], moves: list[tuple[str, str]]) -> int:
    """Rewrite each captured path with the run's own (``moves``: launcher path -> run path).

    A slot that no longer holds a path (reset since: ``tempfile.tempdir`` is None again once
    the child has its environment; a key gone) is left alone: ``str(None)`` is no path.
    """
    done = 0
    for container, how, key in slots:
        try:
            old = getattr(container, key) if how == "attr" else container[key]
        except (AttributeError, KeyError, IndexError):
            continue
        if not isinstance(old, str | PurePath):
            continue
        text = str(old)
        for before, after in moves:
            text = text.replace(before, after)
        new = type(old)(text) if isinstance(old, PurePath) else text
        if how == "attr":
            setattr(container, key, new)
        else:
            container[key] = new
        done += 1
    return done
