"""The `honed` console command: real subprocesses, one-line errors, exit codes."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from honed.retriever.errors import HonedError

HONED = shutil.which("honed", path=str(Path(sys.executable).parent)) or "honed"


def run(*args, **kw):
    return subprocess.run([HONED, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "200"}, **kw)


def test_search_prints_ranked_hits(slice_index, scifact_slice):
    qid = next(iter(scifact_slice.queries))
    p = run("search", str(slice_index), scifact_slice.queries[qid], "-k", "3")
    assert p.returncode == 0, p.stderr
    gold = next(iter(scifact_slice.qrels[qid]))
    assert gold in p.stdout and "score" in p.stdout


def test_search_shows_bracketed_passages_and_ids_verbatim(tmp_path, slice_index):
    """Contract templates are full of [Company] placeholders and [/s/ Name] signature blocks: shown as written,
    never parsed as Rich markup (which dropped the words or crashed the command)."""
    import json

    art = tmp_path / "art"
    shutil.copytree(slice_index, art)
    docs = {"[/x]": "Signed: [/s/ Jane Doe] for the Supplier",
            "[red]rich markup[/red]": "between [Company] and [Client], within the [number] of days"}
    (tmp_path / "new.jsonl").write_text("".join(json.dumps({"_id": i, "text": t}) + "\n" for i, t in docs.items()))
    assert run("index", "add", str(art), "--corpus", str(tmp_path / "new.jsonl")).returncode == 0
    p = run("search", str(art), "signed Jane Doe Company Client number of days", "-k", "200")
    assert p.returncode == 0, p.stderr
    for doc_id, text in docs.items():
        assert doc_id in p.stdout and text in p.stdout, p.stdout[-3000:]


TEXT = "abc xyz[]/=#\\\"'é漢"


@given(st.lists(st.text(alphabet=TEXT, min_size=1, max_size=60).map(str.strip).filter(bool), min_size=1, max_size=4))
@settings(max_examples=200, deadline=None)
def test_every_table_cell_and_header_is_shown_verbatim(cells):
    """The one table type honed prints (retriever/display.py): str cells, headers and titles are data."""
    import io

    from rich.console import Console

    from honed.retriever.display import DataTable

    t = DataTable(*cells, title=cells[0])
    t.add_row(*cells)
    c = Console(width=4000, record=True, file=io.StringIO())
    c.print(t)
    out = c.export_text()
    assert out.count(cells[0]) >= 3, out                            # the title, its header and its cell
    assert all(out.count(x) >= 2 for x in cells), out               # each header and cell


@given(st.text(alphabet=TEXT + "*_`<>&()!:$~|.-+{}\n\t", min_size=1, max_size=60))
@settings(max_examples=300, deadline=None)
def test_ids_in_the_apps_markdown_lines_render_as_written(value):
    """Ids and names the app shows inside st.caption: CommonMark (what Streamlit renders) prints them verbatim."""
    import html

    from markdown_it import MarkdownIt

    from honed.retriever.display import markdown_literal

    rendered = MarkdownIt("commonmark").render(f"doc {markdown_literal(value)} · score 0.5")
    text = html.unescape(rendered.removeprefix("<p>").removesuffix("</p>\n"))
    assert text == f"doc {' '.join(value.split())} · score 0.5"


@pytest.mark.parametrize("args, expected", [
    (["index", "build", "--corpus", "/nonexistent/corpus", "--out", "{tmp}/x"], "/nonexistent/corpus: dataset folder does not exist"),
    (["search", "/nonexistent/index", "query"], "not an index folder"),
    (["eval", "beir", "--data", "/nonexistent", "--system", "a=b=c", "--out", "{tmp}/r"], "does not exist"),
    (["models", "fetch", "no-such-model"], "unknown packaged model 'no-such-model'"),
    (["app", "--baseline", "/nonexistent/a", "--candidate", "/nonexistent/b"], "--baseline: /nonexistent/a is not an index folder"),
    (["app", "--baseline", "x", "--candidate", "x"], "the same system"),
    (["app", "--baseline", "alias:champion", "--candidate", "alias:challenger"], "needs --corpus"),
    (["retrain", "--out", "{tmp}/r", "--db", "{tmp}/feedback.db", "--config", "/nonexistent/gate.toml"],
     "/nonexistent/gate.toml: gate config not found"),
    (["feedback", "export", "--db", "{tmp}/typo.db", "--out", "{tmp}/pairs.jsonl"], "typo.db: no feedback store there"),
    (["annotate", "agreement", "--set", "sf", "--db", "{tmp}/typo.db"], "typo.db: no feedback store there"),
])
def test_bad_input_is_one_clear_line(args, expected, tmp_path):
    p = run(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert p.returncode == 2
    err = p.stderr.strip()
    assert err.startswith("error:") and expected in err
    assert len(err.splitlines()) == 1, err
    assert not list(tmp_path.iterdir()), "a refused command wrote something"    # retrain created its store first


def test_import_of_library_does_not_pull_torch():
    code = ("import sys, honed, honed.retriever, honed.rag_eval, honed.app; import honed.retriever.index, "
            "honed.retriever.data; honed.HonedError; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_models_list():
    p = run("models", "list")
    assert p.returncode == 0 and "all-MiniLM-L6-v2" in p.stdout and "qwen" in p.stdout.lower()


def test_feedback_status_exit_code_signals_the_trigger(tmp_path):
    from honed.app.store import FeedbackStore, Vote

    db = tmp_path / "fb.db"
    p = run("feedback", "status", "--db", str(db), "--json")    # a mistyped --db is refused, not created empty
    assert p.returncode == 2 and f"{db}: no feedback store there" in p.stderr and not db.exists(), p.stderr
    FeedbackStore(db).record(Vote(session_id="s", query="q", system="t", baseline="b", candidate="t",
                                  target="passage", vote=1, doc_id="d", doc_text="some passage"))
    p = run("feedback", "status", "--db", str(db), "--json")
    assert p.returncode == 0 and '"trigger_fired": false' in p.stdout, p.stderr
    p = run("feedback", "status", "--db", str(db), "--min-new-pairs", "1")
    assert p.returncode == 3 and "FIRED" in p.stdout, p.stdout + p.stderr


def test_every_public_name_of_honed_resolves():
    """``honed.__all__`` is a table of lazy imports: a typo there would only fail on a user's first use."""
    import honed

    missing = [n for n in honed.__all__ if getattr(honed, n, None) is None]
    assert not missing


def test_app_refuses_a_generator_that_is_not_a_gguf_before_starting(slice_index, tmp_path):
    other = tmp_path / "other-index"
    shutil.copytree(slice_index, other)
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"not a gguf file")
    for llm, msg in ((str(tmp_path / "missing.gguf"), "is not a folder, not a packaged model"),
                     (str(fake), "not a GGUF file (no GGUF magic bytes)")):
        p = run("app", "--baseline", str(slice_index), "--candidate", str(other), "--llm", llm)
        assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and msg in p.stderr, p.stderr


def test_finetune_settings_are_read_and_checked_in_one_place(tmp_path):
    """TOML, overrides and the demo's settings go through one reader: keys and types checked by name."""
    from honed.retriever.finetune.config import check_finetune_table, finetune_config

    assert check_finetune_table({"max-steps": 5, "lr": 1, "pairs": ["a.jsonl"], "teacher": None}) == \
        {"max_steps": 5, "lr": 1.0, "pairs": ["a.jsonl"], "teacher": None}
    for bad, msg in (({"max_step": 5}, "unknown key 'max_step'"), ({"max_steps": True}, "must be an integer"),
                     ({"lr": "fast"}, "'lr' must be a number"), ({"pairs": [1]}, "'pairs' (an item) must be a string"),
                     ({"search": "yes"}, "must be true or false")):
        with pytest.raises(HonedError, match=re.escape(msg)):
            finetune_config(bad)
    cfg = tmp_path / "ft.toml"
    cfg.write_text('[finetune]\nmax-steps = 3\nlr = "fast"\n')
    for args in (["finetune", "--data", "x", "--config", str(cfg)],
                 ["retrain", "--out", str(tmp_path / "r"), "--finetune-config", str(cfg)]):
        p = run(*args)
        assert p.returncode == 2 and f"{cfg}: [finetune]: key 'lr' must be a number" in p.stderr, p.stderr
        assert len(p.stderr.strip().splitlines()) == 1


def test_finetune_flags_default_to_the_config_defaults():
    """`honed finetune` and `FinetuneConfig` are two doors to one recipe: a default changed in one must
    change in the other (the README's defaults come from measurements)."""
    import dataclasses
    import inspect

    from honed.app.cli.train import finetune_cmd
    from honed.retriever.finetune.config import FinetuneConfig

    config = {f.name: f.default for f in dataclasses.fields(FinetuneConfig) if f.default is not dataclasses.MISSING}
    flags = {name: p.default.default for name, p in inspect.signature(finetune_cmd).parameters.items()
             if hasattr(p.default, "default")}
    shared = sorted(set(config) & set(flags) - {"out", "data", "teacher", "device", "time_budget"})
    assert "lr" in shared and len(shared) > 15
    assert {k: flags[k] for k in shared} == {k: config[k] for k in shared}
