"""Hostile but realistic input: nothing the user made is lost, nothing wrong is silent, errors are one line."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from honed.retriever.data import load_beir
from honed.retriever.data.beir import read_qrels
from honed.retriever.errors import DataError, HonedError

HONED = shutil.which("honed", path=str(Path(sys.executable).parent)) or "honed"


def honed(*args, timeout=300, **kw):
    return subprocess.run([HONED, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "COLUMNS": "200"}, **kw)


def one_line_error(p, expected: str, code: int = 2) -> None:
    err = p.stderr.strip()
    assert p.returncode == code, (p.returncode, p.stdout[-800:], err[-800:])
    assert err.startswith("error:") and expected in err, err
    assert len(err.splitlines()) == 1, err


def write_dataset(root: Path, corpus: list[dict] | None = None, queries: list[dict] | None = None,
                  qrels: str | None = None, bom: bool = False) -> Path:
    """A three-document BEIR folder, with any of its files replaced by the caller's content."""
    corpus = corpus or [{"_id": "d1", "title": "", "text": "Aspirin lowers the risk of heart attacks."},
                        {"_id": "d2", "title": "", "text": "Vitamin D does not prevent bone fractures."},
                        {"_id": "d3", "title": "", "text": "Smoking causes lung cancer."}]
    queries = queries or [{"_id": "q1", "text": "aspirin and heart attack"},
                          {"_id": "q2", "text": "does vitamin D prevent fractures"}]
    qrels = qrels if qrels is not None else "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\n"
    pre = "\ufeff" if bom else ""
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    (root / "corpus.jsonl").write_text(pre + "".join(json.dumps(d) + "\n" for d in corpus), encoding="utf-8")
    (root / "queries.jsonl").write_text(pre + "".join(json.dumps(q) + "\n" for q in queries), encoding="utf-8")
    (root / "qrels" / "test.tsv").write_text(pre + qrels, encoding="utf-8")
    return root


# 1. --out never deletes what honed did not write -------------------------------------------------------

def test_out_folder_with_user_files_is_refused_and_kept(tmp_path):
    data = write_dataset(tmp_path / "d")
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "notes.txt").write_text("x")
    p = honed("eval", "beir", "--data", str(data), "--system", "bm25", "--out", str(victim))
    one_line_error(p, "victim: folder is not empty and is not a honed report")
    assert (victim / "notes.txt").read_text() == "x"

    afile = tmp_path / "afile"
    afile.write_text("keep me")
    p = honed("eval", "beir", "--data", str(data), "--system", "bm25", "--out", str(afile))
    one_line_error(p, "afile: exists and is not a folder")
    assert afile.read_text() == "keep me" and sorted(x.name for x in tmp_path.iterdir()) == ["afile", "d", "victim"]


def test_same_kind_is_replaced_but_added_user_files_are_not_lost(tmp_path):
    data = write_dataset(tmp_path / "d")
    out = tmp_path / "report"
    assert honed("eval", "beir", "--data", str(data), "--system", "bm25", "--out", str(out)).returncode == 0
    record = json.loads((out / "honed-artifact.json").read_text())
    assert record["kind"] == "report" and "report.json" in record["files"]
    p = honed("eval", "beir", "--data", str(data), "--system", "bm25", "--out", str(out))
    assert p.returncode == 0, p.stderr            # its own artifact: replaced
    (out / "my-notes.md").write_text("mine")
    p = honed("eval", "beir", "--data", str(data), "--system", "bm25", "--out", str(out))
    one_line_error(p, "holds files honed did not write (my-notes.md)")
    assert (out / "my-notes.md").exists()
    p = honed("eval", "beir", "--data", str(data), "--system", "bm25", "--out", str(out), "--force")
    assert p.returncode == 0 and not (out / "my-notes.md").exists()
    assert sorted(x.name for x in tmp_path.iterdir()) == ["d", "report"], "no backup or temp left behind"


def test_index_build_refuses_a_report_folder_before_encoding(tmp_path, slice_index):
    from honed.retriever.index import build_index

    other = tmp_path / "other"
    other.mkdir()
    (other / "honed-artifact.json").write_text(json.dumps({"format": 1, "kind": "report", "files": {}}))
    with pytest.raises(HonedError, match="holds a honed report, not a index"):
        build_index("no-such-model-is-loaded", {"d": {"text": "x"}}, other)


def test_files_a_writer_made_private_are_readable_as_the_umask_allows(tmp_path):
    """safetensors writes model.safetensors 0600: a container's service user could not read the model."""
    from honed.retriever.atomic import atomic_dir

    old = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "art", kind="index") as t:
            (t / "model.safetensors").write_bytes(b"x")
            (t / "model.safetensors").chmod(0o600)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "art" / "model.safetensors").stat().st_mode) == 0o644


def test_output_folders_follow_the_umask(tmp_path):
    data = write_dataset(tmp_path / "d")
    out = tmp_path / "report"
    p = subprocess.run(f"umask 022 && {HONED} eval beir --data {data} --system bm25 --out {out}",
                       shell=True, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    assert stat.S_IMODE((out / "report.json").stat().st_mode) == 0o644


# 2. a file swapped in from another artifact is refused ----------------------------------------------

def test_index_faiss_from_another_index_is_refused(tmp_path, slice_index, scifact_slice, minilm):
    from honed.retriever.index import build_index, load_index

    few = dict(list(scifact_slice.corpus.items())[:len(scifact_slice.corpus)])   # same size, other order
    few = dict(reversed(list(few.items())))
    other = build_index(minilm, few, tmp_path / "other", show_progress=False)
    target = tmp_path / "live"
    shutil.copytree(slice_index, target)
    shutil.copyfile(other / "index-1.faiss", target / "index-1.faiss")
    with pytest.raises(HonedError, match=r"live/index-1.faiss: contents do not match store.sqlite"):
        load_index(target)
    p = honed("search", str(target), "vitamin D", "-k", "3")
    one_line_error(p, "index-1.faiss: contents do not match")


def test_truncated_onnx_model_is_refused(tmp_path):
    from honed.retriever.ort_encoder import onnx_model_file

    root = tmp_path / "m"
    (root / "onnx").mkdir(parents=True)
    (root / "onnx" / "model.onnx").write_bytes(b"0123456789")
    (root / "onnx" / "manifest.json").write_text(json.dumps({
        "format": "honed.onnx/2", "files": {"fp32": "model.onnx"}, "sha256": {"fp32": "0" * 64}}))
    with pytest.raises(HonedError, match="model.onnx: contents do not match onnx/manifest.json"):
        onnx_model_file(root, "fp32")


# 3./4. ids and grades ------------------------------------------------------------------------------------

@pytest.mark.parametrize("where", ["corpus", "queries", "qrels"])
def test_nul_in_ids_is_refused_naming_the_line(tmp_path, where):
    corpus = queries = qrels = None
    if where == "corpus":
        corpus = [{"_id": "d1", "text": "a"}, {"_id": "d\x002", "text": "b"}]
    elif where == "queries":
        queries = [{"_id": "q1", "text": "a"}, {"_id": "q\x001", "text": "b"}]
    else:
        qrels = "query-id\tcorpus-id\tscore\nq1\td1\x00x\t1\n"
    root = write_dataset(tmp_path / "d", corpus=corpus, queries=queries, qrels=qrels)
    with pytest.raises(DataError, match=r":2: .*control character U\+0000"):
        load_beir(root)


def test_qrels_grades(tmp_path):
    q = tmp_path / "q.tsv"
    refused = [("q1\td1\t0.5\n", r"q.tsv:1: score '0.5' is not an integer grade"),
               *[(f"q1\td1\t{bad}\n", r"q.tsv:1: score") for bad in ("inf", "1e400", "nan")],
               ("q1\td1\t99999999999999999999\n", "out of range"),
               ("q1\td1\t2\nq1\td2\t1\nq1\td1\t1\n", r"q.tsv:3: \(q1, d1\) is judged 1 here and 2 on line 1"),
               ("q1\td1\t0\nq1\td2\t0\n", "no relevant judgement")]
    for content, expected in refused:
        q.write_text(content)
        with pytest.raises(DataError, match=expected):
            read_qrels(q)
    q.write_text("q1\td1\t1\nq1\td2\t-1\nq1\td3\t2.0\nq1\td1\t1\n")
    stats = {}
    assert read_qrels(q, stats) == {"q1": {"d1": 1, "d2": 0, "d3": 2}} and stats == {"negative_grades": 1}


def test_negative_grades_are_counted_in_the_report(tmp_path):
    data = write_dataset(tmp_path / "d", qrels="q1\td1\t1\nq1\td3\t-1\nq2\td2\t1\n")
    p = honed("eval", "beir", "--data", str(data), "--system", "bm25", "--out", str(tmp_path / "r"))
    assert p.returncode == 0, p.stderr
    doc = json.loads((tmp_path / "r" / "report.json").read_text())
    assert next(iter(doc["datasets"].values()))["qrels_negative_grades"] == 1


def test_bom_is_accepted_everywhere(tmp_path):
    ds = load_beir(write_dataset(tmp_path / "d", bom=True))
    assert set(ds.corpus) == {"d1", "d2", "d3"} and ds.qrels == {"q1": {"d1": 1}, "q2": {"d2": 1}}


@pytest.mark.parametrize("args, expected", [
    (["--max-queries", "-5"], "Invalid value for '--max-queries'"),
    (["--system", "a/b=minilm"], "name 'a/b' may hold only letters"),
])
def test_eval_arguments_are_checked_first(tmp_path, args, expected):
    data = write_dataset(tmp_path / "d")
    p = honed("eval", "beir", "--data", str(data), "--out", str(tmp_path / "r"),
              *(["--system", "bm25"] if "--system" not in args else []), *args)
    one_line_error(p, expected)
    assert not (tmp_path / "r").exists()


def test_corpus_of_empty_texts(tmp_path):
    root = write_dataset(tmp_path / "d", corpus=[{"_id": "d1", "text": ""}, {"_id": "d2", "text": "  "}],
                         qrels="q1\td1\t1\n")
    with pytest.raises(DataError, match="every document's title and text is empty"):
        load_beir(root)


# 5. the gate -------------------------------------------------------------------------------------------

def _beir_report(tmp_path) -> Path:
    data = write_dataset(tmp_path / "d")
    p = honed("eval", "beir", "--data", str(data), "--system", "bm25", "--system", "b2=bm25",
              "--out", str(tmp_path / "rep"))
    assert p.returncode == 0, p.stderr
    return tmp_path / "rep" / "report.json"


GOOD_GATE = 'candidate = "bm25"\n[thresholds]\n"NDCG@10" = 0.0\n'


@pytest.mark.parametrize("config, expected", [
    ('candidate = "bm25"\nbaseline = "bm25"\n[non_regression."NDCG@10"]\nrequire_significance = true\n',
     "unknown key non_regression.'NDCG@10'.require_significance (allowed: max_drop, require_significant, significant_only, alpha, max_ci_drop)"),
    ('candidate = "bm25"\n', "no checks"),
    ('candidate = "bm25"\nbaseline = "base"\n[ood_non_regression."NDCG@10"]\nmax_ci_drop = -0.03\n',
     "ood_non_regression.'NDCG@10'.max_ci_drop must be ≥ 0, got -0.03"),
    ('candidate = "bm25"\n[thresholds]\n"NDCG@10" = "0.4"\n', "thresholds.'NDCG@10' must be a number"),
    ('candidate = "bm25"\nbaseline = "bm25"\n[non_regression]\n"NDCG@10" = 0.0\n', "must be a table"),
    ('candidate = "bm25"\ncandidat = 1\n[thresholds]\n"NDCG@10" = 0.1\n', "unknown key 'candidat'"),
    ('candidate = "bm25"\n[non_regression."NDCG@10"]\nmax_drop = 0.0\n', "needs baseline"),
    ('candidate = "bm25"\nbaseline = "bm25"\n[non_regression."NDCG@10"]\nmax_drop = 0.0\n',
     "a system compared with itself passes every non-regression check"),
])
def test_gate_config_schema(tmp_path, config, expected):
    rep = _beir_report(tmp_path)
    cfg = tmp_path / "gate.toml"
    cfg.write_text(config)
    one_line_error(honed("gate", "--report", str(rep), "--config", str(cfg)), expected)


def test_gate_refuses_reports_it_cannot_judge_with_exit_2(tmp_path):
    rep = _beir_report(tmp_path)
    cfg = tmp_path / "gate.toml"
    cfg.write_text(GOOD_GATE)
    assert honed("gate", "--report", str(rep), "--config", str(cfg)).returncode == 0
    doc = json.loads(rep.read_text())
    bad = tmp_path / "bad.json"
    cases = [
        ({"schema": "honed.rag-report/1", "kind": "rag", "systems": {}}, "RAG report has no systems"),
        ([], "not a honed report"),
        ({**doc, "datasets": {"d": {"systems": {"bm25": {"metrics": {"NDCG@10": "high"}}}}}}, "is not a number"),
        ({**doc, "datasets": {"d": {"systems": {"bm25": {"metrics": {}, "per_query": 3}}}}}, "per_query must map"),
    ]
    for content, expected in cases:
        bad.write_text(json.dumps(content))
        one_line_error(honed("gate", "--report", str(bad), "--config", str(cfg)), expected)
    one_line_error(honed("gate", "--report", str(tmp_path), "--config", str(cfg)), "is a folder")
    nopq = json.loads(rep.read_text())
    for d in nopq["datasets"].values():
        for s in d["systems"].values():
            s.pop("per_query")
    bad.write_text(json.dumps(nopq))
    cfg.write_text('candidate = "bm25"\nbaseline = "b2"\n[non_regression."NDCG@10"]\nmax_drop = 0.0\n')
    one_line_error(honed("gate", "--report", str(bad), "--config", str(cfg)), "no per-query NDCG@10")


# 6. a kill between the two renames of a swap -------------------------------------------------------

def test_kill_between_the_renames_is_rolled_back(tmp_path, slice_index):
    """Where the atomic exchange is unavailable, the swap is two renames; a kill between them is repaired."""
    from honed.retriever.index import load_index

    target = tmp_path / "live"
    shutil.copytree(slice_index, target)
    want = len(load_index(target))
    code = ("import os, time, retriever.atomic as a\n"
            "a._exchange = lambda x, y: False          # the fallback path (no renameat2 here)\n"
            "real = os.replace\n"
            "def slow(src, dst):\n"
            "    real(src, dst)\n"
            "    if '.old-' in str(dst):\n"
            "        print('between', flush=True); time.sleep(60)\n"
            "a.os.replace = slow\n"
            f"with a.atomic_dir({str(target)!r}, kind='index') as tmp:\n"
            "    (tmp / 'manifest.json').write_text('{}')\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"between"
    proc.kill()
    proc.wait()
    assert not target.exists() and len(list(tmp_path.glob(".live.old-*"))) == 1
    assert len(load_index(target)) == want              # opening rolls the swap back
    assert not list(tmp_path.glob(".live.old-*"))


def test_swap_uses_one_atomic_exchange_on_linux(tmp_path, slice_index):
    from honed.retriever.atomic import _exchange

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "x").write_text("a")
    (b / "x").write_text("b")
    assert _exchange(a, b), "renameat2(RENAME_EXCHANGE) unavailable: the two-rename fallback is in use"
    assert (a / "x").read_text() == "b" and (b / "x").read_text() == "a"


# tracebacks that became one-line errors ---------------------------------------------------------------

def test_feedback_store_errors(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database at all" * 100)
    one_line_error(honed("feedback", "status", "--db", str(junk)), "cannot use the feedback database")
    good = tmp_path / "good.db"
    from honed.app.store import FeedbackStore

    # created as the app and the service create it (status only reads a store); closing its connections
    # checkpoints SQLite's write-ahead log into the file, which is cut short below
    FeedbackStore(good).engine.dispose()
    assert honed("feedback", "status", "--db", str(good)).returncode == 0
    truncated = tmp_path / "trunc.db"
    truncated.write_bytes(good.read_bytes()[:1000])
    p = honed("feedback", "status", "--db", str(truncated))
    one_line_error(p, "cannot use the feedback database")
    p = honed("feedback", "status", "--db", "postgresql://u:secret@127.0.0.1/fb")
    one_line_error(p, "the database driver 'psycopg' is not installed (pip install 'psycopg[binary]')")
    assert "secret" not in p.stderr


def test_index_manifest_and_doc_store_damage(tmp_path, slice_index):
    from honed.retriever.index import load_index

    for key in ("model", "dim"):
        bad = tmp_path / f"no-{key}"
        shutil.copytree(slice_index, bad)
        (bad / "honed-artifact.json").unlink()      # without a record, the manifest's own checks speak
        m = json.loads((bad / "manifest.json").read_text())
        m.pop(key)
        (bad / "manifest.json").write_text(json.dumps(m))
        with pytest.raises(HonedError, match=f"key '{key}' is missing"):
            load_index(bad)
    bad = tmp_path / "bad-store"
    shutil.copytree(slice_index, bad)
    (bad / "store.sqlite").write_bytes(b"not a database" * 100)
    with pytest.raises(HonedError, match=r"store.sqlite: not a honed document store"):
        load_index(bad)
    (bad / "store.sqlite").unlink()
    with pytest.raises(HonedError, match=r"store.sqlite: missing; the artifact is incomplete"):
        load_index(bad)


@pytest.mark.parametrize("args, expected", [
    (["search", "IDX", "query", "-k", "0"], "honed search: Invalid value for '-k'"),
    (["search", "IDX", "   "], "QUERY is empty"),
    (["serve", "IDX", "--port", "70000"], "Invalid value for '--port'"),
    (["app", "--baseline", "IDX", "--candidate", "D", "--port", "0"], "Invalid value for '--port'"),
    (["feedback", "export", "--out", "D", "--force"], "is a folder; give the file to write"),
    (["index", "build", "--corpus", "D", "--out", "OUT", "--batch-size", "0"], "Invalid value for '--batch-size'"),
    (["index", "build", "--corpus", "D", "--out", "OUT", "--model", "D/corpus.jsonl"], "is a file; a model is a folder"),
    (["demo", "--answers", "OUT", "--run-dir", "OUT"], "--answers: OUT is not a folder"),
])
def test_arguments_are_refused_before_any_model_loads(tmp_path, slice_index, args, expected):
    data = write_dataset(tmp_path / "d")
    args = [str(slice_index) if a == "IDX" else str(data) if a == "D" else str(tmp_path / "o") if a == "OUT"
            else a.replace("D/", f"{data}/") for a in args]
    t0 = time.perf_counter()
    one_line_error(honed(*args), expected.replace("OUT", str(tmp_path / "o")))
    assert time.perf_counter() - t0 < 60


# a server that outlives its command ----------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_app_stopped_with_sigterm_stops_its_server(tmp_path, slice_index):
    import urllib.request

    port = _free_port()
    proc = subprocess.Popen([HONED, "app", "--baseline", str(slice_index), "--candidate", str(slice_index) + "/",
                             "--port", str(port), "--no-answers", "--db", str(tmp_path / "fb.db")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).status == 200:
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("app never became healthy")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) in (0, -signal.SIGTERM, 128 + signal.SIGTERM)
    with socket.socket() as s:   # nothing listens any more: no orphaned Streamlit server holds the port
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_run_folder_with_changed_files_is_refused(tmp_path):
    from honed.retriever.atomic import atomic_dir
    from honed.retriever.encoder import load_encoder
    from honed.retriever.models import resolve_model

    run = tmp_path / "run"
    with atomic_dir(run, kind="run") as tmp:
        shutil.copytree(resolve_model("minilm"), tmp, dirs_exist_ok=True)
    cfg = json.loads((run / "config.json").read_text())
    cfg["hidden_dropout_prob"] = 0.5
    (run / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(HonedError, match=r"run/config.json: contents do not match honed-artifact.json"):
        load_encoder(run, backend="torch")


def test_files_added_during_a_long_write_are_kept_and_so_is_the_work(tmp_path):
    from honed.retriever.atomic import atomic_dir

    out = tmp_path / "report"
    with pytest.raises(HonedError, match=r"not a honed report \(holds notes.txt\).*kept at .*report.new-"):
        with atomic_dir(out, kind="report") as tmp:
            (tmp / "report.json").write_text("{}")
            out.mkdir()
            (out / "notes.txt").write_text("written by the user while honed worked")
    assert (out / "notes.txt").exists()
    kept = next(tmp_path.glob("report.new-*"))
    assert (kept / "report.json").exists() and (kept / "honed-artifact.json").exists()


def test_store_row_with_damaged_metadata_is_one_line_naming_the_store(tmp_path, slice_index):
    import sqlite3

    art = tmp_path / "art"
    shutil.copytree(slice_index, art)
    with sqlite3.connect(art / "store.sqlite") as con:
        con.execute("UPDATE docs SET metadata = '{not json'")
    p = honed("search", str(art), "aspirin", "-k", "3")
    last = p.stderr.strip().splitlines()[-1]       # (the torch model's loading bar comes before it)
    assert p.returncode == 2 and last.startswith("error:") and "store.sqlite: document" in last, p.stderr[-1500:]
    assert "Traceback" not in p.stderr
