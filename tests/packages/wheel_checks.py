"""Independent checks on built wheels, written against the wheel spec, not against our builder."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def record_problems(wheel: Path) -> list[str]:
    """Every way `wheel`'s RECORD disagrees with its content; empty when the wheel is sound."""
    problems: list[str] = []
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        records = [n for n in names if n.endswith(".dist-info/RECORD")]
        if len(records) != 1:
            return [f"{wheel.name}: {len(records)} RECORD files"]
        rows = list(csv.reader(io.StringIO(archive.read(records[0]).decode("utf-8"))))
        recorded = {row[0] for row in rows}
        problems += [f"{wheel.name}: {n} not in RECORD" for n in names if n not in recorded]
        for path, digest, size in rows:
            if path == records[0]:
                if digest or size:
                    problems.append(f"{wheel.name}: RECORD lists a hash for itself")
                continue
            if path not in names:
                problems.append(f"{wheel.name}: RECORD lists missing {path}")
                continue
            data = archive.read(path)
            actual = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            if digest != f"sha256={actual.decode('ascii')}":
                problems.append(f"{wheel.name}: hash mismatch for {path}")
            if size != str(len(data)):
                problems.append(f"{wheel.name}: size mismatch for {path}")
    return problems


def sha256_of_files(directory: Path) -> dict[str, str]:
    """File name -> sha256 of every file directly in `directory`."""
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.iterdir())
        if path.is_file()
    }


def scrubbed_env(**extra: str) -> dict[str, str]:
    """The environment for a pip we launch: none of this machine's PIP_*/POETRY_*/UV_* settings
    and no pip config file, so the test sees only what its arguments say."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PIP_", "POETRY_", "UV_"))
    }
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env.update(extra)
    return env
