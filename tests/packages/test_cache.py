from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipstorm.packages.cache import (
    CACHE_DIR_ENV,
    cached_corpus,
    corpus_directory,
    default_cache_root,
    rename_into_place,
)
from pipstorm.packages.spec import CorpusError, CorpusSpec, wheel_filename
from tests.packages.wheel_checks import REPO_ROOT, scrubbed_env

SMALL = CorpusSpec(packages=3, versions=("1.0.0", "2.0.0"))


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test may touch the real ~/.cache: point the default root into tmp_path."""
    root = tmp_path / "cache-root"
    monkeypatch.setenv(CACHE_DIR_ENV, str(root))
    return root


def test_first_call_builds_then_later_calls_reuse(tmp_path: Path) -> None:
    corpus = cached_corpus(SMALL)
    assert corpus.directory == tmp_path / "cache-root" / "corpus" / SMALL.key()
    assert corpus.spec == SMALL
    assert [w.name for w in corpus.wheels] == [wheel_filename(p, v) for p, v in SMALL.releases()]
    assert sorted(p.name for p in corpus.directory.iterdir()) == sorted(
        w.name for w in corpus.wheels
    )
    before = {w: w.stat().st_mtime_ns for w in corpus.wheels}

    again = cached_corpus(SMALL)
    assert again == corpus
    assert {w: w.stat().st_mtime_ns for w in again.wheels} == before
    # Only the published corpus is left: no staging directory next to it.
    assert [p.name for p in corpus.directory.parent.iterdir()] == [SMALL.key()]


def test_explicit_root_wins_over_the_environment(tmp_path: Path) -> None:
    corpus = cached_corpus(SMALL, cache_root=tmp_path / "explicit")
    assert corpus.directory == tmp_path / "explicit" / "corpus" / SMALL.key()
    assert not (tmp_path / "cache-root").exists()


def test_different_specs_get_different_directories() -> None:
    other = CorpusSpec(packages=2, versions=("1.0.0",))
    assert cached_corpus(SMALL).directory != cached_corpus(other).directory
    assert len(cached_corpus(other).wheels) == 2


def test_default_root_comes_from_env_xdg_or_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(CACHE_DIR_ENV, "relative/cache")
    assert default_cache_root() == tmp_path / "relative" / "cache"

    monkeypatch.delenv(CACHE_DIR_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_root() == tmp_path / "xdg" / "pipstorm"

    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_root() == tmp_path / "home" / ".cache" / "pipstorm"
    assert corpus_directory(SMALL) == tmp_path / "home" / ".cache" / "pipstorm" / "corpus" / (
        SMALL.key()
    )


def test_losing_the_rename_race_keeps_the_winner(tmp_path: Path) -> None:
    winner = tmp_path / "corpus"
    winner.mkdir()
    (winner / "a.whl").write_text("winner")
    staging = tmp_path / ".corpus.x.building"
    staging.mkdir()
    (staging / "a.whl").write_text("loser")

    assert rename_into_place(staging, winner) is False
    assert (winner / "a.whl").read_text() == "winner"
    assert staging.exists()  # the caller removes it

    fresh = tmp_path / "fresh"
    assert rename_into_place(staging, fresh) is True
    assert (fresh / "a.whl").read_text() == "loser"
    assert not staging.exists()


def test_concurrent_processes_agree_on_one_corpus(tmp_path: Path) -> None:
    root = tmp_path / "shared"
    code = (
        "from pathlib import Path; import sys;"
        "from pipstorm.packages.cache import cached_corpus;"
        "from pipstorm.packages.spec import CorpusSpec;"
        "c = cached_corpus(CorpusSpec(packages=4, versions=('1.0.0', '2.0.0')), Path(sys.argv[1]));"
        "print(c.directory, len(c.wheels))"
    )
    env = scrubbed_env(PYTHONPATH=str(REPO_ROOT))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(root)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        outputs.append(out.strip())
    spec = CorpusSpec(packages=4, versions=("1.0.0", "2.0.0"))
    directory = root / "corpus" / spec.key()
    assert outputs == [f"{directory} 8"] * 3
    assert [p.name for p in directory.parent.iterdir()] == [spec.key()]
    assert len(list(directory.iterdir())) == 8


def test_stale_staging_directories_are_swept_fresh_ones_kept(tmp_path: Path) -> None:
    parent = tmp_path / "cache-root" / "corpus"
    stale = parent / ".deadbeef.abc.building"
    live = parent / ".deadbeef.def.building"
    for staging in (stale, live):
        staging.mkdir(parents=True)
        (staging / "half.whl").write_text("")
    two_days_ago = time.time() - 2 * 24 * 3600
    os.utime(stale, (two_days_ago, two_days_ago))

    cached_corpus(SMALL)
    assert not stale.exists()
    assert live.exists()


def test_a_cached_corpus_with_missing_wheels_is_reported(tmp_path: Path) -> None:
    corpus = cached_corpus(SMALL)
    corpus.wheels[1].unlink()
    with pytest.raises(CorpusError, match="lacks 1 of 6 wheels") as caught:
        cached_corpus(SMALL)
    assert str(corpus.directory) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_an_unusable_cache_root_is_a_one_line_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with pytest.raises(CorpusError, match="cannot create the corpus cache") as caught:
        cached_corpus(SMALL, cache_root=blocker)
    assert "\n" not in str(caught.value)
