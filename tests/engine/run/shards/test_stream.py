"""Shards' streams pulled while they grow, through a real (in-process) Dask worker: the
coordinator's folder ends exactly as the one-shot merge writes it, a piece that does not start
where the coordinator's copy ends is never taken, and a lost shard keeps what was pulled."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipstorm.engine.run.shards.stream import (
    ShardFeed,
    pulled_while_playing,
    read_appended,
    shard_key,
)
from pipstorm.engine.rundir.files import CLIENTS_FILE, HOST_FILE, REQUESTS_FILE, RUN_FILE
from pipstorm.engine.rundir.merge import ShardStreams, merge_into, pack, put_in_time_order
from tests.engine.rundir.test_merge import _split_into_shards
from tests.engine.synthetic_run import write_run

TOKEN = "t0ken"  # noqa: S105 - names a run's pulls, no secret


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real Dask scheduler and worker in this process, on loopback TCP (``Client.run`` goes
    over Dask's comms as it does to a worker process)."""
    import dask
    from distributed import Client, LocalCluster

    scratch = tmp_path_factory.mktemp("dask")  # not /tmp/dask-scratch-space, left behind
    with (
        dask.config.set({"temporary-directory": str(scratch)}),
        LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=1,
            threads_per_worker=1,
            processes=False,
            protocol="tcp://",  # real comms, on loopback only (inproc's default binds more)
            host="127.0.0.1",
            dashboard_address=None,
            worker_dashboard_address=None,
            local_directory=str(scratch),
        ) as cluster,
        Client(cluster, set_as_default=False) as dask,  # type: ignore[no-untyped-call]
    ):
        yield dask


def _worker(client: Any) -> str:
    (address,) = client.scheduler_info()["workers"]
    return str(address)


def _grow(source: Path, target: Path, share: float) -> None:
    """``target``'s streams become the first ``share`` of ``source``'s bytes (a cut last line)."""
    for name in (REQUESTS_FILE, CLIENTS_FILE, HOST_FILE):
        data = (source / name).read_bytes()
        (target / name).write_bytes(data[: int(len(data) * share)])


def test_pulled_while_growing_then_closed_equals_the_one_shot_merge(
    client: Any,
    tmp_path: Path,
) -> None:
    whole = write_run(tmp_path / "whole", duration_s=120)
    sources = _split_into_shards(whole, tmp_path / "shards")
    playing = [tmp_path / "p0", tmp_path / "p1"]
    streamed, merged = tmp_path / "streamed", tmp_path / "merged"
    for folder in (*playing, streamed, merged):
        folder.mkdir()
    worker = _worker(client)
    feed = ShardFeed(
        streamed, TOKEN, hosts={0: "gen-0", 1: "gen-1"}, workers={0: worker, 1: worker}
    )
    with (
        pulled_while_playing(shard_key(TOKEN, 0), playing[0]),
        pulled_while_playing(shard_key(TOKEN, 1), playing[1]),
    ):
        for share in (0.1, 0.35, 0.35, 0.8):
            for source, folder in zip(sources, playing, strict=True):
                _grow(source, folder, share)
            feed.pull(client)
    assert feed.pulls == 4
    taken = feed.offsets[0][REQUESTS_FILE]
    assert 0 < taken < (sources[0] / REQUESTS_FILE).stat().st_size  # pulled a part, whole lines
    finished, _failed = feed.runs_finished()
    assert finished > 0
    feed.pull(client)  # the shards ended: no folder to pull from, nothing changes
    assert feed.offsets[0][REQUESTS_FILE] == taken
    for index, source in enumerate(sources):
        feed.close(index, pack(source))  # the whole streams, shipped with the result
    feed.close(0, pack(sources[0]))  # settled twice: nothing appended twice
    put_in_time_order(streamed)
    merge_into(merged, [ShardStreams(i, f"gen-{i}", pack(s)) for i, s in enumerate(sources)])
    for name in (REQUESTS_FILE, CLIENTS_FILE, HOST_FILE):
        assert (streamed / name).read_bytes() == (merged / name).read_bytes(), name
    assert feed.runs_finished()[0] == len((merged / CLIENTS_FILE).read_text().splitlines())


def test_a_line_cut_short_waits_and_offsets_are_the_coordinators(
    client: Any,
    tmp_path: Path,
) -> None:
    playing, copy = tmp_path / "p", tmp_path / "copy"
    playing.mkdir()
    copy.mkdir()
    (playing / REQUESTS_FILE).write_bytes(b'{"ts": 1.0, "n": 1}\n{"ts": 2.0, "n": 2}\n{"ts": 3')
    feed = ShardFeed(copy, TOKEN, hosts={0: "h"}, workers={0: _worker(client)})
    with pulled_while_playing(shard_key(TOKEN, 0), playing):
        got = read_appended({shard_key(TOKEN, 0): {REQUESTS_FILE: 20}, "other": {}})
        assert set(got) == {shard_key(TOKEN, 0)}  # a shard not played here is left out
        assert got[shard_key(TOKEN, 0)][REQUESTS_FILE][0] == 20  # the piece says where it starts
        feed.pull(client)
        assert feed.offsets[0][REQUESTS_FILE] == 40  # two whole lines; the cut one waits
        with (playing / REQUESTS_FILE).open("ab") as out:
            out.write(b'.0, "n": 3}\n')
        feed.pull(client)
    lines = (copy / REQUESTS_FILE).read_text().splitlines()
    assert [line.split(',"shard"')[0] for line in lines] == [
        '{"ts":1.0,"n":1',
        '{"ts":2.0,"n":2',
        '{"ts":3.0,"n":3',
    ]
    assert all(line.endswith(',"shard":0,"host":"h"}') for line in lines)


def test_a_lost_shard_keeps_what_was_pulled_and_is_pulled_no_more(
    client: Any,
    tmp_path: Path,
) -> None:
    whole = write_run(tmp_path / "whole", duration_s=60)
    playing, copy = tmp_path / "p", tmp_path / "copy"
    copy.mkdir()
    shutil.copytree(whole, playing)
    (playing / RUN_FILE).unlink()
    feed = ShardFeed(copy, TOKEN, hosts={0: "h"}, workers={0: _worker(client)})
    with pulled_while_playing(shard_key(TOKEN, 0), playing):
        feed.pull(client)
        kept = (copy / REQUESTS_FILE).read_bytes()
        assert kept
        feed.lose(0)
        with (playing / REQUESTS_FILE).open("a", encoding="utf-8") as out:
            out.write('{"ts": 9e9, "late": true}\n')
        feed.pull(client)
    assert (copy / REQUESTS_FILE).read_bytes() == kept
