"""The feedback store's tables: votes, impressions and interactions, annotation, retrains.

One SQLAlchemy ``MetaData`` for SQLite (the default, WAL) and any server database
SQLAlchemy reaches; :class:`~app.store.FeedbackStore` creates them on first use.
New columns are added here, with a note on what writes them.

Example:
    >>> import sqlalchemy as sa
    >>> from honed.app.store_schema import feedback_tables
    >>> sorted(feedback_tables(sa, sa.MetaData()))[:3]
    ['annotation_pool', 'annotation_queries', 'answer_labels']
"""
from __future__ import annotations


def feedback_tables(sa, md) -> dict:
    """Every table of the store on `md`, by the attribute name :class:`FeedbackStore` gives it (`sa`: sqlalchemy,
    imported by the caller only when a store is opened)."""
    votes = sa.Table(
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
    impressions = sa.Table(
        "impressions", md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("impression_id", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.String(32), nullable=False, index=True),
        sa.Column("session_id", sa.String(200), nullable=False),
        sa.Column("query", sa.Text, nullable=False),
        sa.Column("arm", sa.String(64), nullable=False),          # champion | challenger | interleaved
        sa.Column("model_version", sa.String(200), nullable=False),
        sa.Column("k", sa.Integer, nullable=False),
        sa.Column("shown", sa.Text, nullable=False),              # [{doc_id, rank, score, arm, key}]
    )
    shown_passages = sa.Table(
        "shown_passages", md,
        sa.Column("key", sa.String(40), primary_key=True),        # sha256(doc id, text)[:40]
        sa.Column("doc_id", sa.String(512), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
    )
    interactions = sa.Table(
        "interactions", md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("impression_id", sa.String(64), nullable=False, index=True),
        sa.Column("kind", sa.String(16), nullable=False),         # click | dwell | thumb
        sa.Column("doc_id", sa.String(512), nullable=False),
        sa.Column("dwell_ms", sa.Float),
        sa.Column("value", sa.Integer),                           # thumbs: +1 / -1
    )
    # annotation (`honed annotate`): queries to judge, their pooled passages, graded labels, answer labels
    annotation_queries = sa.Table(
        "annotation_queries", md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("set_name", sa.String(200), nullable=False),
        sa.Column("query_id", sa.String(200), nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),       # file | log | synthetic
        sa.Column("positive_id", sa.String(512)),                 # synthetic: the passage it was written for
        sa.Column("positive_text", sa.Text),
        sa.UniqueConstraint("set_name", "query_id"),
    )
    annotation_pool = sa.Table(
        "annotation_pool", md,
        sa.Column("set_name", sa.String(200), primary_key=True),
        sa.Column("query_id", sa.String(200), primary_key=True),
        sa.Column("doc_id", sa.String(512), primary_key=True),
        sa.Column("position", sa.Integer, nullable=False),        # the shuffled order every annotator sees
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("systems", sa.Text, nullable=False),            # JSON: which systems retrieved it (hidden)
        sa.Column("depth", sa.Integer),                           # the pool depth it was drawn at
    )
    relevance_labels = sa.Table(
        "relevance_labels", md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("set_name", sa.String(200), nullable=False, index=True),
        sa.Column("query_id", sa.String(200), nullable=False),
        sa.Column("doc_id", sa.String(512), nullable=False),      # "" for a review of the query itself
        sa.Column("annotator", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),         # label | adjudication | review
        sa.Column("grade", sa.Integer),                           # 0-3; review: 1 accept, 0 reject
        sa.Column("note", sa.Text),
        sa.Column("edited_text", sa.Text),                        # review: the query as the reviewer edited it
    )
    answer_labels = sa.Table(
        "answer_labels", md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("set_name", sa.String(200), nullable=False, index=True),
        sa.Column("item_id", sa.String(200), nullable=False),
        sa.Column("question", sa.Text, nullable=False),
        sa.Column("contexts", sa.Text, nullable=False),           # JSON list of passage texts
        sa.Column("answer", sa.Text, nullable=False),
        sa.Column("annotator", sa.String(200), nullable=False),
        sa.Column("faithful", sa.Integer, nullable=False),        # 1 every claim is supported, 0 not
        sa.Column("note", sa.Text),
    )
    retrains = sa.Table(
        "retrains", md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("last_vote_id", sa.Integer, nullable=False),
        sa.Column("details", sa.Text, nullable=False),
    )
    return {"votes": votes, "impressions": impressions, "shown_passages": shown_passages,
            "interactions": interactions, "annotation_queries": annotation_queries,
            "annotation_pool": annotation_pool, "relevance_labels": relevance_labels,
            "answer_labels": answer_labels, "retrains": retrains}
