"""A process that owns a warm launcher with N gated pip children, for the SIGKILL test.

``python -m tests.clients.warm.gated_owner N TEMP_ROOT INDEX_URL`` prints one JSON line (the
launcher's pid and the children's) once every child is gated, then waits to be killed.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from contextlib import ExitStack
from pathlib import Path

from pipstorm.clients.task import ClientTask
from pipstorm.clients.warm.launchers import Launchers
from pipstorm.clients.warm.run import warm_prepared


def main(argv: list[str]) -> None:
    count, root, index_url = int(argv[0]), Path(argv[1]), argv[2]
    launchers = Launchers(root)
    with ExitStack() as stack:
        preps = [
            stack.enter_context(
                warm_prepared(
                    ClientTask(f"g{n}", "pip", "test-package-001", "1.0.0", index_url),
                    launchers=launchers,
                    temp_root=root,
                    due_mono=time.monotonic() + 3600,
                )
            )
            for n in range(count)
        ]
        for prep in preps:
            assert prep.child is not None, prep.error
            prep.child.gated.wait(120)
        pids = [prep.child.pid for prep in preps if prep.child is not None]
        launcher = launchers.for_spec(preps[0].spec) if preps[0].spec else None
        facts = {"launcher": launcher.pid if launcher else None, "children": pids}
        sys.stdout.write(json.dumps(facts) + "\n")
        sys.stdout.flush()
        threading.Event().wait()


if __name__ == "__main__":
    main(sys.argv[1:])
