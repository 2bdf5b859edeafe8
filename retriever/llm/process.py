"""The local LLM in a child process: a native crash in llama.cpp ends one call, not the program that made it.

llama.cpp is native code built on the user's machine; on some CPUs a build has crashed
mid-decode (a segfault takes the whole Python process with it: the Streamlit server, a
pytest run, an hour of RAG evaluation). Every local-LLM call therefore runs in one
long-lived child (``python -m honed.retriever.llm.process``) that owns the llama.cpp
instances. If the child dies, the call raises :class:`LocalLLMCrashed` naming the signal,
and the next call starts a fresh child (the model loads again in about a second).

The protocol is JSON lines: one request on the child's stdin, then zero or more
``{"chunk": …}`` lines and one ``{"done": …}`` or ``{"error": …}`` line on a private copy
of its stdout (fd 1 itself is pointed at stderr, so nothing native can corrupt the stream).

Example:
    >>> from honed.retriever.llm.process import llm_process
    >>> out = llm_process().chat(model="qwen", n_ctx=4096, slot="",
    ...                          messages=[{"role": "user", "content": "Say hi"}], max_tokens=8)  # doctest: +SKIP
    >>> out["choices"][0]["message"]["content"]                                                     # doctest: +SKIP
    'Hi!'
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from typing import Any, Iterator, Sequence

from ..errors import HonedError


class LocalLLMCrashed(HonedError):
    """The local LLM's process died during a call (a native crash in llama.cpp, or the OOM killer)."""


def _signal_name(returncode: int) -> str:
    if returncode < 0:
        try:
            return signal.Signals(-returncode).name
        except ValueError:
            return f"signal {-returncode}"
    return f"exit code {returncode}"


class LLMProcess:
    """One child process that runs llama.cpp; calls are serialised (one llama.cpp context is not thread-safe)."""

    def __init__(self, argv: Sequence[str] | None = None):
        self.argv = list(argv or [sys.executable, "-m", "honed.retriever.llm.process"])
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()

    def _started(self) -> subprocess.Popen:
        if self._proc is None or self._proc.poll() is not None:
            self._proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
        return self._proc

    def _replies(self, request: dict) -> Iterator[dict]:
        """Send one request and yield its reply lines; the caller holds the lock."""
        proc = self._started()
        try:
            proc.stdin.write((json.dumps(request) + "\n").encode())
            proc.stdin.flush()
        except BrokenPipeError:
            pass                                 # the child is gone: reported below, with its exit status
        while True:
            line = proc.stdout.readline()
            if not line:
                rc = proc.wait()
                self._proc = None
                raise LocalLLMCrashed(
                    f"the local LLM process died ({_signal_name(rc)}) during `{request.get('op')}` "
                    f"(model {request.get('model', '?')}): that call's output is lost; the next call restarts it. "
                    "`honed models list` shows the llama.cpp build and CPU features")
            reply = json.loads(line)
            if "error" in reply:
                raise HonedError(reply["error"])
            yield reply
            if "done" in reply:
                return

    def call(self, op: str, **request: Any) -> Any:
        """One request, its result (the ``done`` value)."""
        with self._lock:
            for reply in self._replies({"op": op, **request}):
                if "done" in reply:
                    return reply["done"]

    def stream(self, op: str, **request: Any) -> Iterator[Any]:
        """One streamed request: yields each chunk. Abandoning the stream reads the rest, so the next call is clean."""
        with self._lock:
            replies = self._replies({"op": op, **request})
            try:
                for reply in replies:
                    if "chunk" in reply:
                        yield reply["chunk"]
            finally:
                for _ in replies:                # drain what the child still sends for this request
                    pass

    def chat(self, *, model: str, n_ctx: int, slot: str, **kwargs: Any) -> dict:
        """``Llama.create_chat_completion(**kwargs)`` on the child's instance for (model, n_ctx, slot)."""
        return self.call("chat", model=model, n_ctx=n_ctx, slot=slot, kwargs=kwargs)

    def stream_chat(self, *, model: str, n_ctx: int, slot: str, **kwargs: Any) -> Iterator[dict]:
        return self.stream("chat", model=model, n_ctx=n_ctx, slot=slot, kwargs={**kwargs, "stream": True})

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.stdin.close()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


_PROCESS: LLMProcess | None = None
_PROCESS_LOCK = threading.Lock()


def llm_process() -> LLMProcess:
    """The process-wide local-LLM child (started on first call)."""
    global _PROCESS
    with _PROCESS_LOCK:
        if _PROCESS is None:
            _PROCESS = LLMProcess()
        return _PROCESS


# -- the child ---------------------------------------------------------------------------------------------------

def _serve(requests, replies) -> None:
    from .llama import llama_build_info, load_llama

    def send(obj: dict) -> None:
        replies.write(json.dumps(obj) + "\n")
        replies.flush()

    for line in requests:
        req = json.loads(line)
        try:
            if req["op"] == "chat":
                llama = load_llama(req["model"], n_ctx=req["n_ctx"], slot=req["slot"])
                out = llama.create_chat_completion(**req["kwargs"])
                if req["kwargs"].get("stream"):
                    for chunk in out:
                        send({"chunk": chunk})
                    out = None
                send({"done": out})
            elif req["op"] == "info":
                send({"done": llama_build_info()})
            else:
                send({"error": f"unknown local-LLM request {req['op']!r}"})
        except HonedError as e:
            send({"error": str(e)})
        except Exception as e:     # a Python-level failure inside llama-cpp-python: the caller gets it as one line
            send({"error": f"local LLM: {type(e).__name__}: {str(e)[:300]}"})


def main() -> None:
    replies = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)                  # anything native that prints to stdout goes to stderr, not into the protocol
    sys.stdout = sys.stderr
    _serve(sys.stdin, replies)


if __name__ == "__main__":
    main()
