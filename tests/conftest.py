"""What every test of the suite shares."""

from __future__ import annotations

import signal

# A background job of a non-interactive shell (`make test &`, some CI runners) starts with SIGINT
# ignored, and every process it starts inherits that: pipstorm then never sees the Ctrl-C the
# signal tests send it (Python installs its KeyboardInterrupt handler only where SIGINT is not
# ignored). A handler of our own is not inherited across exec: the processes a test starts get
# the default, as they would from a terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
