"""The Streamlit app: compare retrievers, annotate eval sets, and a results dashboard, as pages of one app.

Started by ``honed app`` (compare + dashboard) or ``honed annotate`` (labelling
pages + dashboard), which pass their settings as JSON in ``HONED_APP_CONFIG``;
run by hand with::

    HONED_APP_CONFIG='{"baseline": "indexes/cuad-clauses-test-base", "candidate": "indexes/cuad-clauses-test-tuned"}' \\
        streamlit run app/ui.py --server.headless true --server.address 127.0.0.1

Config keys: ``baseline``/``candidate`` (compare page), ``annotate`` (a table: set,
data, systems, depth, out, answers; the annotation pages), ``reports`` and
``runs_dir`` (dashboard), ``feedback`` (the store every page uses).
"""
from __future__ import annotations

import json
import os

import streamlit as st

DEFAULTS = {"top_k": 5, "answers": True, "blind": True, "max_tokens": 96, "llm": "qwen", "feedback": None,
            "corpus": None, "index_dir": "indexes", "runs_dir": "runs", "reports": ["reports"]}


def _config() -> dict:
    cfg = {**DEFAULTS, **json.loads(os.environ.get("HONED_APP_CONFIG", "{}"))}
    if not cfg.get("annotate") and not cfg.get("dashboard_only"):
        for key in ("baseline", "candidate"):
            if not cfg.get(key):
                st.error(f"HONED_APP_CONFIG has no {key!r}: start the app with `honed app --baseline … --candidate …`")
                st.stop()
    return cfg


def _page(fn, cfg: dict, title: str, path: str, icon: str, default: bool = False):
    return st.Page(lambda: fn(cfg), title=title, url_path=path, icon=icon, default=default)


# The first page is the default and is served at the root URL ("/"), not at its url_path.
def main() -> None:
    st.set_page_config(page_title="honed", layout="wide")
    cfg = _config()
    from honed.app.views import annotate, compare, dashboard

    pages = []
    if cfg.get("baseline"):
        pages.append(_page(compare.render, cfg, "Compare", "compare", ":material/compare:", default=True))
    if cfg.get("annotate"):
        pages += [_page(annotate.render_label, cfg, "Label", "label", ":material/label:", default=not pages),
                  _page(annotate.render_review, cfg, "Review synthetic", "review", ":material/rate_review:"),
                  _page(annotate.render_adjudicate, cfg, "Adjudicate & export", "adjudicate", ":material/gavel:"),
                  _page(annotate.render_answers, cfg, "Label answers", "answers", ":material/fact_check:")]
    pages.append(_page(dashboard.render, cfg, "Dashboard", "dashboard", ":material/monitoring:", default=not pages))
    st.navigation(pages).run()


main()
