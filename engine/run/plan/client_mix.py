"""Which client kinds a run drives, at which versions: from the profile or the command line.

``--client poetry`` makes every run one kind, ``--mix pip=0.6,poetry=0.4`` draws each run's kind
with those shares, otherwise the profile's ``mix`` (or its single ``client``) holds. Versions
(``--pip-version 25.3``...) pin a kind; unpinned kinds run their driver's default. Everything is
checked here, before a results folder exists, so bad input is one line and no load is sent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from pipstorm.clients.drivers.registry import driver_for
from pipstorm.clients.drivers.tools import check_version
from pipstorm.engine.run.plan.profiles import Profile, ProfileError


@dataclass(frozen=True)
class ClientChoice:
    """The kinds and shares of a run, the pinned versions, and the releases per run by kind."""

    mix: dict[str, float]
    versions: dict[str, str] = field(default_factory=dict)

    @property
    def kinds(self) -> list[str]:
        """Kinds that can occur (share > 0)."""
        return [kind for kind, share in self.mix.items() if share > 0]

    @property
    def pins(self) -> dict[str, int]:
        """Releases one run asks for, by kind."""
        return {kind: driver_for(kind).pins_per_run for kind in self.kinds}

    def to_dict(self) -> dict[str, object]:
        """For run.json: the shares and the version each kind runs (None: driver default)."""
        return {
            "mix": dict(self.mix),
            "versions": {
                kind: self.versions.get(kind, driver_for(kind).default_version)
                for kind in self.kinds
            },
        }


def parse_mix(text: str) -> dict[str, float]:
    """``pip=0.6,poetry=0.4`` as a dict; ProfileError naming the bad part."""
    mix: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        kind, sep, share = part.partition("=")
        try:
            value = float(share)
        except ValueError:
            value = -1.0
        if not sep or not kind.strip() or not value >= 0:
            raise ProfileError(f"--mix: {part!r} is not KIND=SHARE (e.g. pip=0.6,poetry=0.4)")
        mix[kind.strip()] = value
    if not mix or not sum(mix.values()) > 0:
        raise ProfileError(f"--mix: {text!r} names no client with a share > 0")
    return mix


def choose_clients(
    profile: Profile,
    *,
    client: str | None = None,
    mix: Mapping[str, float] | None = None,
    versions: Mapping[str, str | None] | None = None,
) -> ClientChoice:
    """The run's client choice; ProfileError for contradicting options, the clients layer's
    errors for an unknown kind or a bad version."""
    if client is not None and mix is not None:
        raise ProfileError("give --client or --mix, not both")
    shares = dict(mix) if mix is not None else ({client: 1.0} if client else profile.client_mix)
    for kind in shares:
        driver_for(kind)  # UnknownClientError names the known kinds
    pinned = {
        kind: check_version(kind, version)
        for kind, version in (versions or {}).items()
        if version is not None
    }
    return ClientChoice(mix=shares, versions=pinned)


def warm_up(choice: ClientChoice, say: Callable[[str], None]) -> None:
    """Install each kind's cached tool at its version before any load is sent."""
    for kind in choice.kinds:
        driver = driver_for(kind)
        version = choice.versions.get(kind, driver.default_version)
        if version is not None:
            say(f"pipstorm: preparing {kind} {version} (cached after the first time)")
        driver.warm_up(version)
