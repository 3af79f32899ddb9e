"""Settings shared by the fuzz tests.

``FUZZ_EXAMPLES`` sets the number of examples of every codec fuzz test (default 200, which
keeps the test command fast). The transport fuzz tests, which open real connections, run
``FUZZ_EXAMPLES // TRANSPORT_DIVISOR`` examples (at least 10).

Nightly-style run (hours; no per-test timeout, no example database, a fresh random seed)::

    FUZZ_EXAMPLES=1000000 PYTHONPATH=$PWD .venv/bin/python -m pytest -q tests/fuzz

A failure prints the ``@reproduce_failure`` blob and the falsifying example.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, Phase, settings

DEFAULT_EXAMPLES = 200
FUZZ_EXAMPLES = max(1, int(os.environ.get("FUZZ_EXAMPLES", DEFAULT_EXAMPLES)))
#: A transport example costs a few ms of real I/O: ~50x a codec example.
TRANSPORT_DIVISOR = 20
TRANSPORT_EXAMPLES = max(10, FUZZ_EXAMPLES // TRANSPORT_DIVISOR)

_COMMON = {
    "deadline": None,  # a slow example (GC, a shared machine) is not a failure
    "database": None,  # a million examples must not fill .hypothesis/
    "derandomize": False,  # every run explores new inputs
    "print_blob": True,
    "suppress_health_check": list(HealthCheck),
}
settings.register_profile("fuzz", max_examples=FUZZ_EXAMPLES, **_COMMON)
# The transport tests share one server: after a failure its state is not fresh, so shrinking
# would chase that state. The first failing example is reported as it is.
settings.register_profile(
    "fuzz-transport",
    max_examples=TRANSPORT_EXAMPLES,
    phases=[Phase.explicit, Phase.generate],
    report_multiple_bugs=False,
    **_COMMON,
)

#: Decorators for the tests (a profile loaded globally would change other suites too).
fuzz = settings.get_profile("fuzz")
fuzz_transport = settings.get_profile("fuzz-transport")

#: pytest's 120 s per test would stop a long run: no timeout when more examples are asked for.
LONG_RUN = FUZZ_EXAMPLES > 10 * DEFAULT_EXAMPLES
