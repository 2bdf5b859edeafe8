"""The feedback store: thumbs from the app, impressions and clicks from the service, append-only, on SQLAlchemy.

SQLite (WAL, busy timeout, retried writes) by default; any SQLAlchemy URL
(e.g. ``postgresql://…``) for teams, from the argument or ``HONED_FEEDBACK_URL``.
Votes are never updated in place: changing a thumb appends a row, and readers
take the latest row per (session, query, system, target, doc). Retrains are
recorded in the same database so "new pairs since the last retrain" survives
restarts.

The service (``honed serve``) logs one *impression* per answered search (query,
arm, model version, the shown ids and ranks) and *interactions* against it
(click, dwell, thumb). Passage texts are stored once each (``shown_passages``,
keyed by a hash of id and text) so an impression row stays small. A write
returns only after its transaction commits: an acknowledged row survives a
crash of the service (WAL with ``synchronous=NORMAL`` is durable against
process death; only a power cut can lose the last transactions).

Annotation (``honed annotate``, :mod:`~honed.app.annotate`) keeps its queries,
pools, graded relevance labels (and adjudications, reviews of synthetic
queries) and answer-faithfulness labels in the same database, append-only too.

Example:
    >>> from honed.app.store import FeedbackStore, Vote
    >>> store = FeedbackStore("sqlite:///feedback.db")                 # doctest: +SKIP
    >>> store.record(Vote(session_id="s1", query="termination for convenience", system="tuned",
    ...                   baseline="base", candidate="tuned", target="passage", doc_id="d1", vote=1))  # doctest: +SKIP
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from honed.retriever.errors import HonedError

from .store_schema import feedback_tables

DEFAULT_PATH = "feedback.db"
TARGETS = ("answer", "passage")
INTERACTIONS = ("click", "dwell", "thumb")


@dataclass
class Vote:
    """One thumb: on an answer, or on one retrieved passage, of one system for one query."""

    session_id: str
    query: str
    system: str                     # the system voted on (its name, e.g. "tuned")
    baseline: str                   # the two systems compared on screen
    candidate: str
    target: str                     # "answer" | "passage"
    vote: int                       # +1 thumbs up, -1 thumbs down
    doc_id: str | None = None       # passage votes
    doc_text: str | None = None
    rank: int | None = None
    score: float | None = None
    answer: str | None = None       # answer votes: the text the voter saw
    position: str | None = None     # "A" | "B": where the system was shown
    blinded: bool = True
    shown: dict = field(default_factory=dict)   # system → the doc ids it showed, in order
    created_at: str = ""

    def check(self) -> None:
        if self.target not in TARGETS:
            raise HonedError(f"vote target must be one of {TARGETS}, got {self.target!r}")
        if self.vote not in (1, -1):
            raise HonedError(f"vote must be +1 or -1, got {self.vote!r}")
        if self.target == "passage" and not self.doc_id:
            raise HonedError("a passage vote needs doc_id")
        if not self.query.strip():
            raise HonedError("a vote needs the query text")


def feedback_url(url: str | os.PathLike | None = None) -> str:
    """An SQLAlchemy URL: the argument (a URL or a file path), else ``$HONED_FEEDBACK_URL``, else ./feedback.db."""
    url = str(url) if url else os.environ.get("HONED_FEEDBACK_URL", DEFAULT_PATH)
    if "://" in url:
        return url
    return f"sqlite:///{Path(url).resolve()}"


class FeedbackStore:
    """Append-only vote log plus a retrain log, safe for many concurrent writers."""

    def __init__(self, url: str | os.PathLike | None = None, create: bool = True):
        """`create=False` (commands that only read the store) refuses an SQLite file that does not exist, instead
        of creating an empty store at a mistyped path and reporting that it holds nothing."""
        import sqlalchemy as sa

        self.url = feedback_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        self._sa = sa
        with self._errors():
            self._open(sa, create)

    def _open(self, sa, create: bool = True) -> None:
        if self.is_sqlite:
            db_file = Path(self.url.split(":///", 1)[1])
            if db_file.is_dir():
                raise HonedError(f"{db_file}: is a folder, not an SQLite database file")
            if not create and not db_file.exists():
                raise HonedError(f"{db_file}: no feedback store there (nothing recorded yet, or a wrong --db)")
            db_file.parent.mkdir(parents=True, exist_ok=True)
            self.engine = sa.create_engine(self.url, connect_args={"timeout": 30})

            @sa.event.listens_for(self.engine, "connect")
            def _pragmas(conn, _):   # per connection: WAL lets readers and one writer work at once
                cur = conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA busy_timeout=30000")
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.close()
        else:
            self.engine = sa.create_engine(self.url, pool_pre_ping=True)
        md = sa.MetaData()
        for name, table in feedback_tables(sa, md).items():
            setattr(self, name, table)
        try:
            self._write(lambda conn: md.create_all(conn))
        except sa.exc.OperationalError as e:   # another process created the tables between check and create
            if "already exists" not in str(e):
                raise

    @contextlib.contextmanager
    def _errors(self):
        """Database and driver failures as one HonedError line naming the store (password hidden)."""
        sa = self._sa
        try:
            yield
        except ModuleNotFoundError as e:
            pkg = _DRIVERS.get(e.name or "", e.name)
            raise HonedError(f"{_shown(self.url)}: the database driver {e.name!r} is not installed "
                             f"(pip install {pkg})") from None
        except sa.exc.ArgumentError as e:
            raise HonedError(f"{_shown(self.url)}: not a usable database URL ({str(e).splitlines()[0]})") from None
        except sa.exc.DatabaseError as e:
            if isinstance(e, sa.exc.OperationalError) and any(m in str(e).lower() for m in _TRANSIENT):
                raise   # handled by the callers: retried, or another creator won the race
            reason = str(getattr(e, "orig", e)).splitlines()[0]
            raise HonedError(f"{_shown(self.url)}: cannot use the feedback database ({reason}); "
                             "is it an SQLite file honed wrote, and intact?") from None

    def _write(self, fn, attempts: int = 8):
        """Run `fn(conn)` in one transaction; retry the rare 'database is locked' beyond the busy timeout."""
        for i in range(attempts):
            try:
                with self._errors(), self.engine.begin() as conn:
                    return fn(conn)
            except self._sa.exc.OperationalError as e:
                if "locked" not in str(e).lower() or i == attempts - 1:
                    raise
                time.sleep(0.05 * (2 ** i) * (1 + random.random()))

    def write(self, fn):
        """Run `fn(conn)` in one committed transaction (retried when SQLite is locked); returns its result."""
        return self._write(fn)

    def rows(self, stmt) -> list[dict]:
        """The rows of one SELECT, as dicts."""
        with self._errors(), self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(stmt).mappings()]

    def insert_ignore(self, table):
        """INSERT that skips rows whose key exists (for idempotent writes)."""
        return self._insert_ignore(table)

    def record(self, vote: Vote) -> int:
        """Append one vote; returns its row id."""
        vote.check()
        row = asdict(vote)
        row["created_at"] = row["created_at"] or _now()
        row["shown"] = json.dumps(row["shown"], ensure_ascii=False)
        return self._write(lambda conn: conn.execute(self.votes.insert().values(**row)).inserted_primary_key[0])

    def all_votes(self, after_id: int = 0) -> list[dict]:
        """Every vote row (oldest first), optionally only those after a row id."""
        with self._errors(), self.engine.connect() as conn:
            rows = conn.execute(self.votes.select().where(self.votes.c.id > after_id)
                                .order_by(self.votes.c.id)).mappings().all()
        return [{**r, "shown": json.loads(r["shown"] or "{}")} for r in rows]

    def logged_queries(self) -> list[str]:
        """Every distinct query users sent: voted on in the app or served by the endpoint (oldest first)."""
        seen = [r["query"] for r in self.rows(self._sa.select(self.votes.c.query).order_by(self.votes.c.id))]
        seen += [r["query"] for r in self.rows(self._sa.select(self.impressions.c.query))]
        return list(dict.fromkeys(q for q in seen if q))

    def latest_votes(self, after_id: int = 0) -> list[dict]:
        """The effective votes: the last row per (session, query, system, target, doc)."""
        latest: dict[tuple, dict] = {}
        for r in self.all_votes(after_id):
            latest[(r["session_id"], r["query"], r["system"], r["target"], r["doc_id"])] = r
        return sorted(latest.values(), key=lambda r: r["id"])

    def count(self) -> int:
        with self._errors(), self.engine.connect() as conn:
            return int(conn.execute(self._sa.select(self._sa.func.count()).select_from(self.votes)).scalar_one())

    def last_vote_id(self) -> int:
        with self._errors(), self.engine.connect() as conn:
            return int(conn.execute(self._sa.select(self._sa.func.max(self.votes.c.id))).scalar() or 0)

    # -- the service's impressions and interactions ------------------------------------------------
    def record_impression(self, impression_id: str, session_id: str, query: str, arm: str, model_version: str,
                          k: int, shown: list[dict], created_at: str | None = None) -> None:
        """Log one answered search; `shown` holds ``doc_id``, ``rank``, ``score``, ``arm`` and ``text`` per hit.

        `created_at` (ISO time) is for replaying a log kept elsewhere; by default, now.
        """
        passages = {}
        listed = []
        for h in shown:
            key = passage_key(h["doc_id"], h["text"])
            passages[key] = {"key": key, "doc_id": h["doc_id"], "text": h["text"]}
            listed.append({"doc_id": h["doc_id"], "rank": h["rank"], "score": h["score"], "arm": h["arm"],
                           "key": key})
        row = {"impression_id": impression_id, "created_at": created_at or _now(), "session_id": session_id,
               "query": query, "arm": arm, "model_version": model_version, "k": k,
               "shown": json.dumps(listed, ensure_ascii=False)}

        def write(conn):
            if passages:
                conn.execute(self._insert_ignore(self.shown_passages), list(passages.values()))
            conn.execute(self.impressions.insert().values(**row))
        self._write(write)

    def impression(self, impression_id: str) -> dict | None:
        with self._errors(), self.engine.connect() as conn:
            r = conn.execute(self.impressions.select().where(self.impressions.c.impression_id == impression_id)
                             ).mappings().first()
        return {**r, "shown": json.loads(r["shown"])} if r else None

    def record_interaction(self, impression_id: str, kind: str, doc_id: str, dwell_ms: float | None = None,
                           value: int | None = None) -> int:
        """Append a click, dwell or thumb on a shown result; returns its row id once committed."""
        if kind not in INTERACTIONS:
            raise HonedError(f"interaction type must be one of {INTERACTIONS}, got {kind!r}")
        row = {"created_at": _now(), "impression_id": impression_id, "kind": kind, "doc_id": doc_id,
               "dwell_ms": dwell_ms, "value": value}
        return self._write(lambda conn: conn.execute(self.interactions.insert().values(**row)).inserted_primary_key[0])

    def impressions_with_interactions(self, after_interaction_id: int = 0, since: str | None = None) -> list[dict]:
        """Impressions (oldest first), each with its ``interactions`` and shown passages' ``text``.

        With `after_interaction_id`, only impressions that got an interaction after that row;
        with `since` (ISO time), only impressions logged at or after it.
        """
        sa = self._sa
        imp, it, sp = self.impressions, self.interactions, self.shown_passages
        with self._errors(), self.engine.connect() as conn:
            q = imp.select().order_by(imp.c.id)
            if since:
                q = q.where(imp.c.created_at >= since)
            if after_interaction_id:
                q = q.where(imp.c.impression_id.in_(
                    sa.select(it.c.impression_id).where(it.c.id > after_interaction_id)))
            rows = [dict(r) for r in conn.execute(q).mappings()]
            ids = [r["impression_id"] for r in rows]
            acts: dict[str, list[dict]] = {}
            for i in range(0, len(ids), 900):
                for r in conn.execute(it.select().where(it.c.impression_id.in_(ids[i:i + 900]))
                                      .order_by(it.c.id)).mappings():
                    acts.setdefault(r["impression_id"], []).append(dict(r))
            for r in rows:
                r["shown"] = json.loads(r["shown"])
            keys = sorted({h["key"] for r in rows for h in r["shown"]})
            texts = {}
            for i in range(0, len(keys), 900):
                texts.update(conn.execute(sa.select(sp.c.key, sp.c.text).where(sp.c.key.in_(keys[i:i + 900]))).all())
        for r in rows:
            r["shown"] = [{**h, "text": texts.get(h["key"], "")} for h in r["shown"]]
            r["interactions"] = acts.get(r["impression_id"], [])
        return rows

    def has_impressions(self) -> bool:
        with self._errors(), self.engine.connect() as conn:
            return conn.execute(self._sa.select(self.impressions.c.id).limit(1)).first() is not None

    def count_interactions(self) -> int:
        with self._errors(), self.engine.connect() as conn:
            return int(conn.execute(self._sa.select(self._sa.func.count()).select_from(self.interactions)).scalar_one())

    def last_interaction_id(self) -> int:
        with self._errors(), self.engine.connect() as conn:
            return int(conn.execute(self._sa.select(self._sa.func.max(self.interactions.c.id))).scalar() or 0)

    def _insert_ignore(self, table):
        """INSERT that skips rows whose primary key exists (the dialects spell it differently)."""
        name = self.engine.dialect.name
        if name == "sqlite":
            return table.insert().prefix_with("OR IGNORE")
        if name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
            return insert(table).on_conflict_do_nothing()
        if name in ("mysql", "mariadb"):
            return table.insert().prefix_with("IGNORE")
        raise HonedError(f"{_shown(self.url)}: the feedback store supports SQLite, PostgreSQL and MySQL, not {name}")

    def record_retrain(self, details: dict, last_vote_id: int) -> None:
        """Remember that a retrain consumed every vote up to `last_vote_id`."""
        row = {"created_at": _now(), "last_vote_id": last_vote_id, "details": json.dumps(details, default=str)}
        self._write(lambda conn: conn.execute(self.retrains.insert().values(**row)))

    def last_retrain(self) -> dict | None:
        with self._errors(), self.engine.connect() as conn:
            r = conn.execute(self.retrains.select().order_by(self.retrains.c.id.desc()).limit(1)).mappings().first()
        return {**r, "details": json.loads(r["details"])} if r else None


_TRANSIENT = ("locked", "already exists")
_DRIVERS = {"psycopg2": "psycopg2-binary", "psycopg": "'psycopg[binary]'", "pymysql": "pymysql",
            "MySQLdb": "mysqlclient", "asyncpg": "asyncpg"}


def _shown(url: str) -> str:
    """The URL with any password masked, for error messages."""
    import sqlalchemy as sa

    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:   # an unparsable URL: show only its scheme
        return url.split("://", 1)[0] + "://…"


def passage_key(doc_id: str, text: str) -> str:
    """The shown-passage key: the same id with edited text is a different passage."""
    return hashlib.sha256(f"{doc_id}\x00{text}".encode()).hexdigest()[:40]


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")
