"""The scratch reaper removes its folder once the owner is gone, also after a SIGKILL."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import psutil

from pipstorm.engine.run import reaper


def test_the_folder_goes_when_its_owner_is_killed(tmp_path: Path) -> None:
    folder = tmp_path / "scratch"
    (folder / "worker-1").mkdir(parents=True)
    (folder / "worker-1" / "requests.jsonl").write_text("{}\n", encoding="utf-8")
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    guard = subprocess.Popen(
        [sys.executable, "-m", "pipstorm.engine.run.reaper", str(owner.pid), str(folder)],
        start_new_session=True,
    )
    try:
        time.sleep(0.5)
        assert folder.exists()  # the owner is alive: nothing is touched
        owner.kill()
        owner.wait()
        assert guard.wait(timeout=30) == 0
        assert not folder.exists()
    finally:
        for proc in (owner, guard):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_an_owner_that_cleaned_up_itself_stops_its_reaper(tmp_path: Path) -> None:
    guard = reaper.start(tmp_path)
    reaper.stop(guard)
    assert guard.returncode is not None
    assert tmp_path.exists()  # stopping the reaper never removes anything


def test_a_killed_owner_nobody_reaped_yet_counts_as_gone(tmp_path: Path) -> None:
    """A SIGKILLed pipstorm is a zombie until its shell reaps it; its folder goes meanwhile."""
    folder = tmp_path / "scratch"
    folder.mkdir()
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    guard = subprocess.Popen(
        [sys.executable, "-m", "pipstorm.engine.run.reaper", str(owner.pid), str(folder)],
        start_new_session=True,
    )
    try:
        owner.kill()  # not waited for: a zombie until the end of the test
        assert guard.wait(timeout=30) == 0
        assert not folder.exists()
        assert psutil.Process(owner.pid).status() == psutil.STATUS_ZOMBIE
    finally:
        for proc in (owner, guard):
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def test_a_guarded_folder_goes_at_the_end_of_its_block() -> None:
    with reaper.guarded_folder("pipstorm-test-") as folder:
        (folder / "x").write_text("x", encoding="utf-8")
        assert folder.is_dir()
    assert not folder.exists()


def test_the_folder_stays_while_a_process_still_works_inside_it(tmp_path: Path) -> None:
    """An orphaned pypiserver finishes its in-flight requests in its private dir (cwd) inside the
    run folder: its htpasswd removed under it answered 500s that the report counted as the
    index's (tests/e2e/test_kill.py). The folder goes once that process has exited."""
    folder = tmp_path / "scratch"
    (folder / "server").mkdir(parents=True)
    (folder / "server" / "htpasswd").write_text("u:x\n", encoding="utf-8")
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    server = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], cwd=folder / "server"
    )
    guard = subprocess.Popen(
        [sys.executable, "-m", "pipstorm.engine.run.reaper", str(owner.pid), str(folder)],
        start_new_session=True,
    )
    try:
        owner.kill()
        owner.wait()
        time.sleep(3.0)  # the reaper's old rule removed the folder within about a second
        assert (folder / "server" / "htpasswd").exists()
        server.kill()
        server.wait()
        assert guard.wait(timeout=30) == 0
        assert not folder.exists()
    finally:
        for proc in (owner, server, guard):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
