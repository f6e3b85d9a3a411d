"""Build hook: the four top-level folders install as one import package, ``pipstorm``.

The repository keeps ``engine/ clients/ infra/ packages/`` at its top level (the project's design);
the wheel maps them under ``pipstorm/`` (``[tool.hatch.build.targets.wheel.sources]``). What no
folder holds is the package's own ``__init__.py``, so this hook writes it: in a wheel, a docstring;
in an editable install (``make test``), a ``__path__`` naming the checkout, so that
``pipstorm.engine`` is ``<checkout>/engine`` while nothing of the checkout is put on ``sys.path``
(hatchling's own editable mode cannot add a prefix to a folder: pfmoore/editables#20).
``pipstorm/__main__.py`` is ``engine/__main__.py`` in both.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

DOC = '"""pipstorm: load-test a Python package index with real clients."""\n'


class NamespaceHook(BuildHookInterface):  # type: ignore[type-arg]
    """Adds ``pipstorm/__init__.py`` (and ``__main__.py``) to the wheel or the editable wheel."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        out = self._scratch = Path(tempfile.mkdtemp(prefix="hatch-pipstorm-"))
        init = out / "__init__.py"
        main = str(Path(self.root) / "engine" / "__main__.py")
        if version == "editable":
            checkout = str(Path(self.root).resolve())
            init.write_text(
                f"{DOC}\n__path__ = [*__path__, {checkout!r}]  # + the checkout's folders\n"
            )
            build_data["force_include_editable"][str(init)] = "pipstorm/__init__.py"
            build_data["force_include_editable"][main] = "pipstorm/__main__.py"
        else:
            init.write_text(DOC)
            build_data["force_include"][str(init)] = "pipstorm/__init__.py"
            build_data["force_include"][main] = "pipstorm/__main__.py"

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        shutil.rmtree(self._scratch, ignore_errors=True)
