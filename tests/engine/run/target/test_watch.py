"""The embedded target dying during a run is noticed at once and recorded in run.json."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from pipstorm.engine.run.target.opening import Target
from pipstorm.engine.run.target.watch import watch_target
from pipstorm.engine.rundir.events import TARGET_DIED, read_events
from pipstorm.engine.rundir.meta import RunMeta
from pipstorm.infra.pypiserver.target import LocalPypiserver
from pipstorm.packages.spec import CorpusSpec


def _target(server: LocalPypiserver) -> Target:
    return Target(
        kind="embedded",
        index_url=server.index_url,
        credentials=server.credentials,
        corpus=CorpusSpec(),
        server_pid=server.pid,
        server=server,
    )


def test_a_killed_server_is_recorded_with_its_signal_and_said(tmp_path: Path) -> None:
    said: list[str] = []
    meta = RunMeta(profile={"name": "watched"}, started=time.time())
    with LocalPypiserver(tmp_path) as server:
        with watch_target(_target(server), meta, said.append, poll_s=0.05):
            os.kill(server.pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while "died" not in meta.target and time.monotonic() < deadline:
                time.sleep(0.05)
        assert meta.target["died"]["exit_code"] == -signal.SIGKILL
    assert len(said) == 1
    assert "the embedded target (pypiserver) died at t=" in said[0]


def test_a_death_is_on_disk_the_moment_it_is_seen(tmp_path: Path) -> None:
    # Before the watch ends (a SIGKILLed pipstorm never gets there): events.jsonl has it.
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    meta = RunMeta(profile={"name": "watched"}, started=time.time())
    with LocalPypiserver(tmp_path) as server:
        with watch_target(_target(server), meta, lambda _: None, poll_s=0.05, run_dir=run_dir):
            os.kill(server.pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while "died" not in meta.target and time.monotonic() < deadline:
                time.sleep(0.05)
            events = read_events(run_dir)
        assert [e["event"] for e in events] == [TARGET_DIED]
        assert events[0]["exit_code"] == -signal.SIGKILL
        assert events[0]["ts"] == meta.target["died"]["ts"]


def test_a_server_stopped_after_the_watch_is_no_death(tmp_path: Path) -> None:
    said: list[str] = []
    meta = RunMeta(profile={"name": "watched"}, started=time.time())
    with LocalPypiserver(tmp_path) as server:
        with watch_target(_target(server), meta, said.append, poll_s=0.05):
            time.sleep(0.2)
        server.stop()  # the end of a run: the watch is over first
        time.sleep(0.2)
    assert "died" not in meta.target
    assert said == []
