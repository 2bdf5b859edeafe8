"""A native crash fails one call or one test, never the program around it.

llama.cpp built for another CPU has segfaulted in decode (Intel Xeon with AMX). That crash cannot be
produced on purpose with the real model here, so these tests crash a real child process the same way
(a real SIGSEGV from reading address 0 with ctypes) where the local-LLM process would run, and check
what the caller sees. The real model runs through the same client in test_app.py and test_rag_eval.py.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from honed.retriever.errors import HonedError
from honed.retriever.llm.process import LLMProcess, LocalLLMCrashed

# a child that reads one request, then dies of SIGSEGV as llama.cpp's decode did
SEGFAULT_CHILD = [sys.executable, "-c", "import ctypes, sys; sys.stdin.readline(); ctypes.string_at(0)"]

# a child that speaks the protocol: three chunks then done, or an error line for op "fail"
SCRIPTED_CHILD = [sys.executable, "-c", textwrap.dedent("""
    import json, sys
    for line in sys.stdin:
        req = json.loads(line)
        if req["op"] == "fail":
            print(json.dumps({"error": "local LLM: ValueError: bad prompt"}), flush=True)
            continue
        for i in range(3):
            print(json.dumps({"chunk": f"{req['tag']}{i}"}), flush=True)
        print(json.dumps({"done": req["tag"]}), flush=True)
""")]


def test_segfault_in_the_llm_process_is_one_error_naming_the_signal_and_the_next_call_restarts():
    proc = LLMProcess(SEGFAULT_CHILD)
    with pytest.raises(LocalLLMCrashed, match="SIGSEGV") as err:
        proc.call("chat", model="qwen")
    assert "\n" not in str(err.value) and "next call restarts" in str(err.value)
    first = proc._proc
    with pytest.raises(LocalLLMCrashed, match="SIGSEGV"):       # a fresh child, which crashes again: not a hang
        list(proc.stream("chat", model="qwen"))
    assert proc._proc is None and first is None


def test_abandoned_stream_is_drained_so_the_next_call_gets_its_own_reply():
    proc = LLMProcess(SCRIPTED_CHILD)
    try:
        stream = proc.stream("chat", tag="a")
        assert next(stream) == "a0"
        stream.close()                                       # the consumer gave up after one chunk
        assert list(proc.stream("chat", tag="b")) == ["b0", "b1", "b2"]
        assert proc.call("chat", tag="c") == "c"
        with pytest.raises(HonedError, match="bad prompt"):   # a Python error in the child is one line, not a death
            proc.call("fail")
        assert proc.call("chat", tag="d") == "d" and proc._proc.poll() is None
    finally:
        proc.close()


def test_isolated_marker_reports_a_segfaulting_test_as_one_failure_and_runs_the_rest(tmp_path):
    """Tests that load llama.cpp in the test process are marked `isolated` (tests/isolation.py): prove what
    that buys, with a test that really segfaults."""
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["isolation"]\n')
    (tmp_path / "test_crashy.py").write_text(textwrap.dedent("""
        import ctypes
        import pytest

        @pytest.mark.isolated
        def test_native_crash():
            ctypes.string_at(0)

        @pytest.mark.isolated
        def test_isolated_and_fine():
            assert sum([1, 1]) == 2

        def test_after_the_crash():
            assert 1 + 1 == 2
    """))
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).parent)})
    out = run.stdout + run.stderr
    assert run.returncode == 1, out
    assert "1 failed, 2 passed" in out, out
    assert "crashed with SIGSEGV" in out, out
