"""pytest plugin: a test marked ``isolated`` runs in a fresh Python process, so a native crash fails only that test.

Tests that load llama.cpp in the test process itself (not through honed's local-LLM child process)
could take the whole run down with a segfault, as llama.cpp built for another CPU did. Such a test is
run again as ``python -m pytest NODEID`` in a new interpreter; a child killed by a signal is reported
as this test's failure naming the signal, and the rest of the tier runs on.

Why not pytest-forked: it forks the test process, and a fork of a process whose OpenMP pool has run
(torch's, in every session that encoded anything) hangs as soon as the child's llama.cpp uses OpenMP.
A fresh interpreter has no inherited threads.

    @pytest.mark.isolated
    def test_that_loads_llama_cpp_in_process(): ...
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

CHILD_ENV = "HONED_ISOLATED_CHILD"


def pytest_configure(config):
    config.addinivalue_line("markers", "isolated: run this test in a fresh Python process (native crashes stay there)")


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    if pyfuncitem.get_closest_marker("isolated") is None or os.environ.get(CHILD_ENV):
        return None                                   # not isolated, or already the child: run it here
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", pyfuncitem.nodeid], cwd=pyfuncitem.config.rootpath, capture_output=True, text=True,
                         env={**os.environ, CHILD_ENV: "1",
                              "PYTHONPATH": os.pathsep.join(filter(None, [str(pyfuncitem.path.parent),
                                                                          os.environ.get("PYTHONPATH")]))})
    tail = (run.stdout + run.stderr)[-3000:]
    if run.returncode < 0:
        pytest.fail(f"the isolated test process crashed with {signal.Signals(-run.returncode).name}:\n{tail}",
                    pytrace=False)
    if run.returncode != 0:
        pytest.fail(f"isolated test failed (exit {run.returncode}):\n{tail}", pytrace=False)
    return True
