"""Every client kind this version can drive, and the one place a kind name is checked."""

from __future__ import annotations

from collections.abc import Mapping

from pipstorm.clients.drivers import pip, poetry, synthetic, twine, uv
from pipstorm.clients.drivers.protocol import Driver
from pipstorm.clients.errors import UnknownClientError

_DRIVERS: dict[str, Driver] = {
    d.kind: d for d in (pip.DRIVER, poetry.DRIVER, uv.DRIVER, twine.DRIVER, synthetic.DRIVER)
}
#: Client kinds this version can drive, in the order the CLI lists them.
KINDS: tuple[str, ...] = tuple(_DRIVERS)


def driver_for(kind: str) -> Driver:
    """The driver of ``kind``; UnknownClientError naming the known kinds otherwise."""
    try:
        return _DRIVERS[kind]
    except KeyError:
        raise UnknownClientError(
            f"unknown client kind {kind!r} (known: {', '.join(KINDS)})"
        ) from None


def warm_up(kinds_and_versions: Mapping[str, str | None]) -> None:
    """Warm up each client kind at its version (cached tools); before a load run starts."""
    for kind, version in kinds_and_versions.items():
        driver_for(kind).warm_up(version)
