"""A small persistent key → JSON cache (SQLite) for generations and judgements.

Re-running a RAG evaluation with the same model, prompts and inputs costs no
LLM calls. Values are JSON, never pickle.

Example:
    >>> from honed.rag_eval.cache import JsonCache
    >>> c = JsonCache("/tmp/honed-cache.sqlite")
    >>> c.get_or_compute(("gen", "q1"), lambda: {"text": "hi"})
    {'text': 'hi'}
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from pathlib import Path


def default_cache_path() -> Path:
    import platformdirs

    return Path(os.environ.get("HONED_CACHE_DIR") or platformdirs.user_cache_dir("honed")) / "llm-cache.sqlite"


class JsonCache:
    """Thread-safe SQLite cache keyed by the sha256 of a JSON-serialisable key."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path else default_cache_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS cache (k TEXT PRIMARY KEY, v TEXT NOT NULL)")
        self._db.commit()
        self.hits = self.misses = 0

    @staticmethod
    def key(parts) -> str:
        return hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=False).encode()).hexdigest()

    def get(self, parts):
        """The cached value or None; counts hits and misses."""
        with self._lock:
            row = self._db.execute("SELECT v FROM cache WHERE k = ?", (self.key(parts),)).fetchone()
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        return json.loads(row[0])

    def put(self, parts, value) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO cache (k, v) VALUES (?, ?)", (self.key(parts), json.dumps(value)))
            self._db.commit()

    def get_or_compute(self, parts, fn):
        hit = self.get(parts)
        if hit is not None:
            return hit
        value = fn()
        self.put(parts, value)
        return value
