"""How long llama.cpp's idle OpenMP workers spin before they sleep; set before llama.cpp is loaded.

llama-cpp-python builds llama.cpp with OpenMP. After each multi-thread `llama_decode` (a prompt, a step
of several sequences), libgomp's workers spin, waiting for the next one, for its default 300,000
rounds: about 9 ms of a core per request here. llama-server does little between decodes, so its
spinning costs nothing; this server's event loop and engine thread run Python there, and on a small
machine the spinning worker takes the core they need. ggml's barriers between a decode's operations
are OpenMP barriers in this build, so the count governs those waits too: short spins cover them in a
one-token decode (a few microseconds each), which is as fast as before, but a long prompt's prefill
may wait longer there (docs/performance.md has the measurement). libgomp reads the setting when it is
loaded, so this must run before the first `import llama_cpp` of the process.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import MutableMapping

log = logging.getLogger(__name__)

# Rounds an idle worker spins before it sleeps (a small fraction of a millisecond). With it, one streamed
# one-token request cost the server 7-9 ms of CPU against 17 with libgomp's default, in
# pinaivu_local/bench/request_overhead.py, and one-token decodes of the 1B-shaped model were no slower.
SPIN_COUNT = 10_000

# Either of these set by the user is their choice: theirs is kept.
_USER_SETTINGS = ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")


def limit_spinning(environ: MutableMapping[str, str] = os.environ) -> bool:
    """Shorten the spinning of idle OpenMP workers, unless the user set it or llama.cpp is loaded.

    Returns whether the setting is in effect (ours or the user's).
    """
    if any(name in environ for name in _USER_SETTINGS):
        return True
    if "llama_cpp" in sys.modules:  # libgomp has read its settings already
        log.debug("llama.cpp is loaded already: OpenMP keeps its default spinning")
        return False
    environ["GOMP_SPINCOUNT"] = str(SPIN_COUNT)
    return True
