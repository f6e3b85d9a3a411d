"""The environment a client process gets: this machine's pip settings scrubbed away.

Build machines inject ``PIP_*`` variables (find-links, timeouts) and pip config files. A client run
that inherited them would measure this machine's configuration instead of the index, so every
client starts from an explicit environment with a private HOME and no config files.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

#: Prefixes of variables that change what a client does; none of them may leak into a run.
SCRUBBED_PREFIXES = ("PIP_", "POETRY_", "UV_", "VIRTUALENV_", "PYTHON", "TWINE_", "CONDA_")
#: Variables that would point a client at credentials or config outside its throwaway home.
SCRUBBED_NAMES = frozenset(
    {
        *("NETRC", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "VIRTUAL_ENV"),
        *("PYPI_USERNAME", "PYPI_PASSWORD"),
        *("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"),
    }
)


#: A loopback port nothing listens on (discard); see the guard in ``scrubbed_env``.
NOWHERE_PROXY = "http://127.0.0.1:9"
_PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


def scrubbed_env(
    home: Path, extra: Mapping[str, str] | None = None, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Return the environment for one client run, with ``home`` as its private HOME.

    Proxy variables are replaced: every request must go straight to the loopback proxy
    (``NO_PROXY`` covers loopback), and anything else is sent to a dead loopback port.
    """
    source = os.environ if base is None else base
    env = {
        key: value
        for key, value in source.items()
        if not key.startswith(SCRUBBED_PREFIXES) and key not in SCRUBBED_NAMES
    }
    env.update(
        {
            "HOME": str(home),
            "XDG_CACHE_HOME": str(home / ".cache"),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_DATA_HOME": str(home / ".local" / "share"),
            "PIP_CONFIG_FILE": os.devnull,  # pip: "os.devnull means load no config file at all"
            "PYTHONDONTWRITEBYTECODE": "1",
            "NO_PROXY": "127.0.0.1,localhost,::1",
            "no_proxy": "127.0.0.1,localhost,::1",
            # A guard, not a proxy: a client that tried to reach any host but loopback (a
            # resolver falling back to PyPI, say) fails at once instead of sending load there.
            **dict.fromkeys(_PROXY_VARS, NOWHERE_PROXY),
            # System-wide client config (/etc/xdg/uv/uv.toml...) is not this run's either.
            "XDG_CONFIG_DIRS": str(home / ".config"),
        }
    )
    if extra:
        env.update(extra)
    return env
