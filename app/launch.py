"""Run a server as a child process that stops when its parent command is stopped.

A process manager or container runtime stops a command with SIGTERM. Python's
default would end the CLI and orphan the server, still holding its port; here
SIGTERM, SIGINT and SIGHUP are passed on to the child, and the command exits
when the child has.

Example:
    >>> from honed.app.launch import run_server
    >>> run_server([sys.executable, "-m", "http.server", "8000"])   # doctest: +SKIP
"""
from __future__ import annotations

import signal
import subprocess

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def run_server(cmd: list[str], env: dict | None = None, stop_timeout: float = 10.0) -> int:
    """Start `cmd`, forward stop signals to it, wait for it, and return its exit status.

    A child that ignores the forwarded signal for `stop_timeout` seconds is killed.
    """
    child = subprocess.Popen(cmd, env=env)
    previous = {}

    def forward(signum, _frame):
        if child.poll() is None:
            child.send_signal(signum)

    for sig in FORWARDED:
        previous[sig] = signal.signal(sig, forward)
    try:
        return child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if child.poll() is None:
            try:
                child.wait(stop_timeout)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
