"""Progress lines of a fine-tuning run, on stderr: one line per phase's start and result.

Bars come from the libraries doing the work (encoding, mining, training); these lines say
which phase is running and how long it took, so a user knows where twenty minutes went.

Example:
    >>> from honed.retriever.finetune.progress import phase
    >>> with phase("loading pairs"):        # doctest: +SKIP
    ...     pass
"""
from __future__ import annotations

import sys
import time


def say(msg: str) -> None:
    """One progress line on stderr (a phase's result); bars come from the libraries doing the work."""
    print(f"[honed finetune] {msg}", file=sys.stderr, flush=True)


class phase:
    """``with phase("loading pairs"):`` prints the phase when it starts and its duration when it ends."""

    def __init__(self, what: str):
        self.what = what

    def __enter__(self):
        self.t0 = time.perf_counter()
        say(f"{self.what} …")
        return self

    def __exit__(self, *exc):
        if exc[0] is None:
            say(f"{self.what}: done in {time.perf_counter() - self.t0:.1f} s")
        return False
