"""The feedback store: every thumbs-up/down from the app, append-only, on SQLAlchemy.

SQLite (WAL, busy timeout, retried writes) by default; any SQLAlchemy URL
(e.g. ``postgresql://…``) for teams, from the argument or ``HONED_FEEDBACK_URL``.
Votes are never updated in place: changing a thumb appends a row, and readers
take the latest row per (session, query, system, target, doc). Retrains are
recorded in the same database so "new pairs since the last retrain" survives
restarts.

Example:
    >>> from honed.app.store import FeedbackStore, Vote
    >>> store = FeedbackStore("sqlite:///feedback.db")                 # doctest: +SKIP
    >>> store.record(Vote(session_id="s1", query="termination for convenience", system="tuned",
    ...                   baseline="base", candidate="tuned", target="passage", doc_id="d1", vote=1))  # doctest: +SKIP
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from honed.retriever.errors import HonedError

DEFAULT_PATH = "feedback.db"
TARGETS = ("answer", "passage")


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

    def __init__(self, url: str | os.PathLike | None = None):
        import sqlalchemy as sa

        self.url = feedback_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        self._sa = sa
        with self._errors():
            self._open(sa)

    def _open(self, sa) -> None:
        if self.is_sqlite:
            db_file = Path(self.url.split(":///", 1)[1])
            if db_file.is_dir():
                raise HonedError(f"{db_file}: is a folder, not an SQLite database file")
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
        self.votes = sa.Table(
            "votes", md,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("created_at", sa.String(32), nullable=False, index=True),
            sa.Column("session_id", sa.String(64), nullable=False),
            sa.Column("query", sa.Text, nullable=False),
            sa.Column("system", sa.String(200), nullable=False),
            sa.Column("baseline", sa.String(200), nullable=False),
            sa.Column("candidate", sa.String(200), nullable=False),
            sa.Column("target", sa.String(16), nullable=False),
            sa.Column("vote", sa.Integer, nullable=False),
            sa.Column("doc_id", sa.String(200)),
            sa.Column("doc_text", sa.Text),
            sa.Column("rank", sa.Integer),
            sa.Column("score", sa.Float),
            sa.Column("answer", sa.Text),
            sa.Column("position", sa.String(4)),
            sa.Column("blinded", sa.Boolean, nullable=False, default=True),
            sa.Column("shown", sa.Text, nullable=False, default="{}"),
        )
        self.retrains = sa.Table(
            "retrains", md,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("created_at", sa.String(32), nullable=False),
            sa.Column("last_vote_id", sa.Integer, nullable=False),
            sa.Column("details", sa.Text, nullable=False),
        )
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


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")
