"""Cached tool venvs: built in a temp folder, renamed into place, and still runnable from there."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from pipstorm.clients.drivers.tools import ensure_tool, tools_root

#: A small tool with a console script that pipstorm already depends on (so this machine's pip
#: configuration can install it without reaching anything new).
TOOL, VERSION = "tabulate", "0.9.0"


def test_console_scripts_of_a_tool_venv_run_from_where_it_was_moved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIPSTORM_CACHE_DIR", str(tmp_path / "cache"))
    tool = ensure_tool(TOOL, VERSION)
    bin_dir = tool.python.parent
    script = bin_dir / TOOL
    # The shebang names the published venv's interpreter, not the temp folder it was built in.
    # pip writes `#!<python>`, or `#!/bin/sh` and a `'''exec' <python> "$0" "$@"` line where
    # that shebang would pass the kernel's 127 bytes (the build folder's path is longer than the
    # final one: a deep cache such as a pytest-xdist worker's temp folder gets this form).
    first, second = script.read_text().splitlines()[:2]
    named = second.split()[1] if first == "#!/bin/sh" else first.removeprefix("#!")
    assert named == str(tool.python)
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    done = subprocess.run(
        [str(script), "--help"], capture_output=True, text=True, timeout=60, check=False, env=env
    )
    assert done.returncode == 0, done.stderr
    assert "Usage" in done.stdout or "usage" in done.stdout
    pip = subprocess.run(
        [str(bin_dir / "pip"), "--version"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert pip.returncode == 0 and str(bin_dir.parent) in pip.stdout, pip.stderr
    # No file in bin/ still points into a build folder, and none is left in the tools root.
    stale = [p.name for p in bin_dir.iterdir() if p.is_file() and b".building" in p.read_bytes()]
    assert stale == []
    assert [p.name for p in tools_root().iterdir()] == [f"{TOOL}-{VERSION}"]


def test_a_venv_cached_before_the_fix_is_repaired_on_its_next_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIPSTORM_CACHE_DIR", str(tmp_path / "cache"))
    tool = ensure_tool(TOOL, VERSION)
    script = tool.python.parent / TOOL
    # What an older pipstorm left: the shebang of the temp folder the venv was built in.
    built_in = tools_root() / f".{TOOL}-{VERSION}.abcd1234.building" / "v" / "bin" / "python"
    text = script.read_text().splitlines(keepends=True)
    script.write_text(f"#!{built_in}\n" + "".join(text[1:]))
    (tool.python.parent.parent / ".relocated").unlink()
    again = ensure_tool(TOOL, VERSION)
    assert script.read_text().splitlines()[0] == f"#!{again.python}"
    assert os.access(script, os.X_OK)
