"""What a warm launcher imports and computes once, per client module (stdlib only).

Part of the warm agent (``pipstorm.clients.warm.agent``), which runs inside the client's
interpreter: the lists below were measured with a probe (``Launcher.fork(probe=...)``: the modules a
child imported after its release) against pip 25.3/26.3, poetry 2.5.1 and twine 7.0.0, so a child
imports nothing after its gate opens. Names another version lacks are skipped.
"""

from __future__ import annotations

import contextlib
import importlib
from typing import Any

#: What each client module's runs import; imported once in the launcher so no child pays for
#: it. Missing names (another version) are skipped. Measured with ``late_imports`` (see below).
PRELOAD: dict[str, tuple[str, ...]] = {
    "pip": (
        "pip._internal.cli.main",
        "pip._internal.cli.main_parser",
        "pip._internal.cli.autocompletion",
        "pip._internal.commands.download",
        "pip._internal.network.session",
        "pip._internal.network.download",
        "pip._internal.network.lazy_wheel",
        "pip._internal.index.collector",
        "pip._internal.index.package_finder",
        "pip._internal.operations.prepare",
        "pip._internal.req.req_install",
        "pip._internal.resolution.resolvelib.resolver",
        "pip._internal.resolution.resolvelib.factory",
        "pip._internal.resolution.resolvelib.provider",
        "pip._internal.resolution.resolvelib.reporter",
        "pip._internal.metadata.importlib",
        "pip._internal.utils.logging",
        "pip._internal.self_outdated_check",
        "pip._vendor.truststore",
        "pip._vendor.distro",
        "pip._vendor.rich.console",
        "pip._vendor.rich.progress",
        "pip._vendor.urllib3",
        "pip._vendor.requests",
        "pip._vendor.idna",
        "pip._vendor.msgpack",
        "pip._vendor.cachecontrol",
        "pip._vendor.certifi",
        "ssl",
        "email.parser",
        "zipfile",
        "http.client",
        "netrc",
        "encodings.cp437",
    ),
    "poetry": (
        "poetry.console.application",
        "poetry.console.commands.lock",
        "poetry.console.commands.installer_command",
        "poetry.factory",
        "poetry.installation.installer",
        "poetry.installation.executor",
        "poetry.puzzle.solver",
        "poetry.puzzle.provider",
        "poetry.mixology.version_solver",
        "poetry.repositories.legacy_repository",
        "poetry.repositories.http_repository",
        "poetry.repositories.link_sources.html",
        "poetry.repositories.pypi_repository",
        "poetry.utils.authenticator",
        "poetry.utils.env",
        "poetry.utils.cache",
        "poetry.inspection.info",
        "poetry.inspection.lazy_wheel",
        "poetry.packages.locker",
        "poetry.core.factory",
        "poetry.core.packages.dependency",
        "cleo.application",
        "requests",
        "urllib3",
        "cachecontrol",
        "keyring",
        "keyring.backends.null",
        "pkginfo",
        "tomlkit",
        "dulwich.repo",
        "virtualenv",
        "ssl",
        "pickle",
        "getpass",
        "termios",
        "netrc",
        "encodings.cp437",
        "encodings.unicode_escape",
        "lark",
        "poetry.core.version.markers",
        "poetry.core.version.requirements",
        "poetry.core.packages.url_dependency",
        "poetry.core.packages.vcs_dependency",
        "poetry.core.spdx.helpers",
        "poetry.core.vcs.git",
        "poetry.console.logging.io_handler",
        "poetry.console.logging.io_formatter",
        "poetry.console.logging.formatters.builder_formatter",
        "poetry.console.commands.self.self_command",
        "poetry.repositories.single_page_repository",
    ),
    "twine": (
        "twine.cli",
        "twine.commands.upload",
        "twine.package",
        "twine.repository",
        "twine.settings",
        "twine.auth",
        "twine.utils",
        "requests",
        "requests_toolbelt.multipart.encoder",
        "urllib3",
        "rich.console",
        "rich.logging",
        "rich._emoji_codes",
        "keyring",
        "keyring.backends.null",
        "readme_renderer",
        "ssl",
        "netrc",
        "encodings.cp437",
    ),
}
#: Pure computations a client caches in its modules on first use (``functools.cache`` or a
#: lazy attribute), done once in the launcher so children share the result instead of each
#: redoing it: pip's SSL context, poetry's two lark LALR parsers (PEP 508 markers,
#: requirements) and its compiled JSON-schema validators. No I/O but reading installed files,
#: no network; (module, dotted callable, arguments).
PREWARM: dict[str, tuple[tuple[str, str, tuple[str, ...]], ...]] = {
    # pip's truststore SSL context with certifi's bundle (~30 ms of CPU per run when each child
    # made its own): it reads no environment (truststore wraps a plain SSLContext; the bundle is
    # certifi's file) and the launcher never connects, so every child inherits an unused
    # context, as a fresh pip process would make it (pip 24.2 on caches it with lru_cache).
    "pip": (("pip._internal.cli.index_command", "_create_truststore_ssl_context", ()),),
    "poetry": (
        ("poetry.core.version.markers", "_parser.parse", ('python_version >= "3.8"',)),
        ("poetry.core.version.requirements", "_parser.parse", ("pipstorm (==1.0)",)),
        ("poetry.core.json", "_get_validator", ("project-schema",)),
        ("poetry.core.json", "_get_validator", ("poetry-schema",)),
        ("poetry.core.json", "_get_validator", ("dependency-groups-schema",)),
        ("poetry.json", "_get_validator_and_properties", ()),
    ),
}


def preload(module: str) -> list[str]:
    """Import ``module``, what its runs import, and do its PREWARM work; the names missing."""
    importlib.import_module(module)
    missing = []
    for name in PRELOAD.get(module, ()):
        try:
            importlib.import_module(name)
        except Exception:
            missing.append(name)
    for name, dotted, args in PREWARM.get(module, ()):
        with contextlib.suppress(Exception):  # another version lacks it: no harm
            target: Any = importlib.import_module(name)
            for part in dotted.split("."):
                target = getattr(target, part)
            target(*args)
    return missing
