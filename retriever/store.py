"""The document store of a retriever artifact: one SQLite file keyed by id, metadata queryable.

Each document row carries ``pos``, the int64 label its vector has in FAISS.
Labels are never reused (``AUTOINCREMENT``), so a deleted document can never
come back in results under another document's label. The ``meta`` table names
the FAISS file of the current *generation*, with its size and sha256: an update
writes the next generation's FAISS file first and then switches to it in the
same SQLite transaction that changes the rows, so a reader sees the old state or
the new one, never a mix (see :mod:`retriever.index`).

Metadata filters run as SQL over the JSON metadata (:func:`retriever.filters.filters_to_sql`),
and their id selections are cached per generation.

Example:
    >>> from honed.retriever.store import DocStore
    >>> store = DocStore("indexes/cuad/store.sqlite")            # doctest: +SKIP
    >>> store.get_by_pos([0, 1])[0]["id"]                        # doctest: +SKIP
    'te000-1'
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections import OrderedDict
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from .errors import HonedError
from .filters import py_str

SCHEMA = """
CREATE TABLE IF NOT EXISTS docs (
    pos        INTEGER PRIMARY KEY AUTOINCREMENT,   -- the vector's label in FAISS; never reused
    id         TEXT NOT NULL UNIQUE,
    title      TEXT NOT NULL DEFAULT '',
    text       TEXT NOT NULL,
    metadata   TEXT NOT NULL DEFAULT '{}',          -- a JSON object
    ref_doc_id TEXT                                 -- LlamaIndex: the source document of a node
);
CREATE INDEX IF NOT EXISTS docs_ref ON docs(ref_doc_id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tombstones (pos INTEGER PRIMARY KEY);   -- deleted, still in an HNSW graph
-- Top-level scalar metadata values, indexed by (key, value): equality and membership filters are
-- index lookups instead of a JSON parse of every row. Triggers keep it in step with docs.
CREATE TABLE IF NOT EXISTS meta_kv (pos INTEGER NOT NULL, key TEXT NOT NULL, type TEXT NOT NULL, value);
CREATE INDEX IF NOT EXISTS meta_kv_key_value ON meta_kv(key, value);
CREATE INDEX IF NOT EXISTS meta_kv_pos ON meta_kv(pos);
CREATE TRIGGER IF NOT EXISTS docs_kv_insert AFTER INSERT ON docs BEGIN
    INSERT INTO meta_kv(pos, key, type, value)
    SELECT NEW.pos, key, type, value FROM json_each(NEW.metadata) WHERE type NOT IN ('array', 'object');
END;
CREATE TRIGGER IF NOT EXISTS docs_kv_delete AFTER DELETE ON docs BEGIN
    DELETE FROM meta_kv WHERE pos = OLD.pos;
END;
"""


DIGEST_MOD = 1 << 128


def row_hash(pos: int, doc_id: str, title: str, text: str, metadata: str, ref_doc_id: str | None) -> int:
    """One stored row's contribution to the store's digest (its label and every column as stored)."""
    raw = json.dumps([int(pos), doc_id, title, text, metadata, ref_doc_id], ensure_ascii=False)
    return int.from_bytes(hashlib.sha256(raw.encode("utf-8")).digest()[:16], "big")


# The rows' digest is a sum of per-row hashes mod 2^128 (a multiset hash), not a hash of a sorted dump,
# because an update must move it by the rows it adds and deletes without reading the rest of the store.
def _digest_hex(value: int) -> str:
    return f"{value % DIGEST_MOD:032x}"


def _py_lower(s):
    return s.lower() if isinstance(s, str) else s


class DocStore:
    """Documents by id and by FAISS label, in one SQLite file (WAL: readers never block the writer)."""

    def __init__(self, path: str | os.PathLike, create: bool = False, readonly: bool = False):
        self.path = Path(path)
        self._recording = create   # a new store records its count and digest from its first row
        if not create and not self.path.is_file():
            raise HonedError(f"{self.path}: missing; the artifact is incomplete")
        # A folder we cannot write (a read-only mount in a container, another user's files): a WAL database
        # cannot even be read there, since readers create the -shm file beside it, so it opens immutable.
        # Nobody can change it in place through such a mount either.
        self.frozen = not create and not os.access(self.path.parent, os.W_OK)
        try:
            if self.frozen:
                uri = f"file:{self.path}?mode=ro&immutable=1"
            else:
                uri = f"file:{self.path}?mode={'ro' if readonly else 'rwc'}"
            self.conn = sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None,
                                        check_same_thread=False)
            self.conn.create_function("py_lower", 1, _py_lower, deterministic=True)
            self.conn.create_function("py_str", 2, py_str, deterministic=True)
            if not readonly and not self.frozen:
                self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA busy_timeout=30000")
            if create:
                self.conn.executescript(SCHEMA)
            self.conn.execute("SELECT count(*) FROM meta").fetchone()
        except sqlite3.DatabaseError as e:
            raise HonedError(f"{self.path}: not a honed document store ({e})") from None
        self._selections: OrderedDict[tuple, np.ndarray] = OrderedDict()

    # -- meta -------------------------------------------------------------------------------------
    def meta(self) -> dict:
        out = {}
        for k, v in self.conn.execute("SELECT key, value FROM meta"):
            try:
                out[k] = json.loads(v)
            except (TypeError, ValueError, RecursionError):
                raise HonedError(f"{self.path}: meta key {k!r} is not valid JSON ({str(v)[:40]!r}); the store was "
                                 "edited or damaged: rebuild the index") from None
        return out

    def set_meta(self, values: dict) -> None:
        """Write meta keys (call inside the caller's transaction to make them atomic with row changes)."""
        self.conn.executemany("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET "
                              "value = excluded.value", [(k, json.dumps(v)) for k, v in values.items()])

    def generation(self) -> int:
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        try:
            return int(json.loads(row[0])) if row else 0
        except (TypeError, ValueError):
            raise HonedError(f"{self.path}: meta key 'generation' is not a number ({row[0][:40]!r})") from None

    # -- rows -------------------------------------------------------------------------------------
    def count(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM docs").fetchone()[0])

    def insert(self, docs: Iterable[dict]) -> list[int]:
        """Insert documents (``id``, ``text``, optional ``title``/``metadata``/``ref_doc_id``); return their labels."""
        out = []
        docs = list(docs)
        for d in docs:
            try:
                cur = self.conn.execute(
                    "INSERT INTO docs(id, title, text, metadata, ref_doc_id) VALUES (?, ?, ?, ?, ?)",
                    (d["id"], d.get("title") or "", d["text"], self._meta_json(d), d.get("ref_doc_id")))
            except sqlite3.IntegrityError:
                raise HonedError(f"document id {d['id']!r} is already in {self.path.parent}; "
                                 "use upsert to replace it") from None
            out.append(int(cur.lastrowid))
        self._move_digest(sum(row_hash(p, d["id"], d.get("title") or "", d["text"], self._meta_json(d),
                                       d.get("ref_doc_id")) for p, d in zip(out, docs)))
        return out

    def insert_at(self, docs: list[dict], labels) -> None:
        """Insert documents under given labels (a new artifact; labels of an upgraded one)."""
        values = [(int(p), d["id"], d.get("title") or "", d["text"], self._meta_json(d), d.get("ref_doc_id"))
                  for p, d in zip(labels, docs)]
        self.conn.executemany(
            "INSERT INTO docs(pos, id, title, text, metadata, ref_doc_id) VALUES (?, ?, ?, ?, ?, ?)", values)
        self._move_digest(sum(row_hash(*v) for v in values))

    @staticmethod
    def _meta_json(d: dict) -> str:
        return json.dumps(d.get("metadata") or {}, ensure_ascii=False)

    def _move_digest(self, delta: int) -> None:
        """Keep the recorded document count and rows' digest in step with a change (inside its transaction).

        A store written before honed recorded them (no ``rows_digest``) is left as it was.
        """
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'rows_digest'").fetchone()
        if row is None and not self._recording:
            return
        try:
            current = int(json.loads(row[0]), 16) if row else 0
        except (TypeError, ValueError):
            raise HonedError(f"{self.path}: meta key 'rows_digest' is damaged ({row[0][:40]!r}); rebuild the index "
                             "(nothing was changed)") from None
        self.set_meta({"rows_digest": _digest_hex(current + delta), "documents": self.count()})

    def rows_digest(self) -> str:
        """The digest of every row, computed from the rows themselves (``honed index verify``)."""
        total = 0
        for values in self.conn.execute("SELECT pos, id, title, text, metadata, ref_doc_id FROM docs"):
            total += row_hash(*values)
        return _digest_hex(total)

    def tombstones(self) -> np.ndarray:
        rows = self.conn.execute("SELECT pos FROM tombstones ORDER BY pos").fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def add_tombstones(self, positions) -> None:
        self.conn.executemany("INSERT OR IGNORE INTO tombstones(pos) VALUES (?)", [(int(p),) for p in positions])

    def positions_of(self, ids: Iterable[str]) -> dict[str, int]:
        """{doc id: label} for the ids that exist."""
        found: dict[str, int] = {}
        ids = list(ids)
        for i in range(0, len(ids), 900):   # SQLite's default limit on bound parameters
            chunk = ids[i:i + 900]
            q = f"SELECT id, pos FROM docs WHERE id IN ({','.join('?' * len(chunk))})"
            found.update(dict(self.conn.execute(q, chunk).fetchall()))
        return found

    def positions_of_ref(self, ref_doc_id: str) -> list[int]:
        return [r[0] for r in self.conn.execute("SELECT pos FROM docs WHERE ref_doc_id = ?", (ref_doc_id,))]

    def delete_positions(self, positions: Iterable[int]) -> None:
        positions = [int(p) for p in positions]
        gone = 0
        for i in range(0, len(positions), 900):
            chunk = positions[i:i + 900]
            q = (f"SELECT pos, id, title, text, metadata, ref_doc_id FROM docs "
                 f"WHERE pos IN ({','.join('?' * len(chunk))})")
            gone += sum(row_hash(*values) for values in self.conn.execute(q, chunk))
        self.conn.executemany("DELETE FROM docs WHERE pos = ?", [(p,) for p in positions])
        self._move_digest(-gone)

    def get_by_pos(self, positions: list[int]) -> list[dict | None]:
        """Documents for FAISS labels, in the given order (None for a label with no row)."""
        rows: dict[int, dict] = {}
        for i in range(0, len(positions), 900):
            chunk = [int(p) for p in positions[i:i + 900]]
            q = (f"SELECT pos, id, title, text, metadata, ref_doc_id FROM docs "
                 f"WHERE pos IN ({','.join('?' * len(chunk))})")
            for pos, did, title, text, meta, ref in self.conn.execute(q, chunk):
                rows[pos] = {"id": did, "title": title, "text": text, "metadata": self._metadata(meta, did)}
                if ref is not None:
                    rows[pos]["ref_doc_id"] = ref
        return [rows.get(int(p)) for p in positions]

    def iter_docs(self) -> Iterator[tuple[int, dict]]:
        """(label, document) in label order: insertion order."""
        for pos, did, title, text, meta in self.conn.execute(
                "SELECT pos, id, title, text, metadata FROM docs ORDER BY pos"):
            yield pos, {"id": did, "title": title, "text": text, "metadata": self._metadata(meta, did)}

    def _metadata(self, raw: str, doc_id: str) -> dict:
        """A row's metadata; a row edited by hand into something that is not a JSON object is one line naming it."""
        try:
            meta = json.loads(raw)
        except (TypeError, json.JSONDecodeError):
            meta = None
        if not isinstance(meta, dict):
            raise HonedError(f"{self.path}: document {doc_id!r} has metadata that is not a JSON object "
                             f"({str(raw)[:60]!r}); the store was edited or damaged: rebuild or repackage the index")
        return meta

    def ids(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT id FROM docs ORDER BY pos")]

    # -- filters ----------------------------------------------------------------------------------
    def select(self, filters) -> np.ndarray:
        """Labels of the documents that pass LlamaIndex ``MetadataFilters``, cached per generation."""
        from .filters import filters_key, filters_to_sql

        key = (filters_key(filters), self.generation())
        hit = self._selections.get(key)
        if hit is not None:
            self._selections.move_to_end(key)
            return hit
        where, params = filters_to_sql(filters, indexed=True)
        rows = self.conn.execute(f"SELECT pos FROM docs WHERE {where}", params).fetchall()
        sel = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        self._selections[key] = sel
        while len(self._selections) > 64:
            self._selections.popitem(last=False)
        return sel

    def close(self) -> None:
        self.conn.close()
