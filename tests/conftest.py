"""Shared fixtures: a small real SciFact slice, the real packaged MiniLM, a real FAISS index.

Every dataset a test reads ships with the repository (`datasets/`, and the
fixtures under `tests/fixtures/` with their licences), so the suite runs on a
fresh clone with nothing beside it.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")          # a forgotten hub call fails fast
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest

pytest_plugins = ["isolation"]     # tests/isolation.py: @pytest.mark.isolated runs a test in a fresh process

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
SCIFACT = FIXTURES / "scifact-slice"        # 155 SciFact abstracts, 60 train + 30 test claims
CUAD = FIXTURES / "cuad-mini"               # 8 CUAD v1 contracts in CUAD's own layout
CUAD_CLAUSES = REPO / "datasets" / "cuad-clauses"


@pytest.fixture(scope="session")
def scifact_dir() -> Path:
    return SCIFACT


@pytest.fixture(scope="session")
def cuad_dir() -> Path:
    return CUAD


@pytest.fixture(scope="session")
def scifact_test(scifact_dir):
    from honed.retriever.data import load_beir

    return load_beir(scifact_dir, "test")


@pytest.fixture(scope="session")
def scifact_slice(scifact_test):
    """25 real test queries, their gold abstracts, plus 60 other abstracts as distractors."""
    from honed.retriever.data import BeirDataset

    qids = sorted(scifact_test.qrels)[:25]
    gold = sorted({d for q in qids for d in scifact_test.qrels[q]})
    others = [d for d in sorted(scifact_test.corpus) if d not in gold][:60]
    corpus = {d: scifact_test.corpus[d] for d in gold + others}
    return BeirDataset(corpus=corpus, queries={q: scifact_test.queries[q] for q in qids},
                       qrels={q: scifact_test.qrels[q] for q in qids}, split="test")


@pytest.fixture(scope="session")
def minilm():
    from honed.retriever.encoder import load_encoder

    return load_encoder("minilm")


@pytest.fixture(scope="session")
def slice_index(tmp_path_factory, scifact_slice, minilm):
    """A real flat FAISS index of the slice, built once per session."""
    from honed.retriever.index import build_index

    out = tmp_path_factory.mktemp("idx") / "scifact-slice"
    build_index(minilm, scifact_slice.corpus, out, show_progress=False)
    return out


@pytest.fixture(scope="session")
def slice_beir(tmp_path_factory, scifact_slice):
    """The slice as a BEIR folder (what `slice_index` indexes, in the same order), for the CLI."""
    from honed.retriever.data import write_beir

    data = tmp_path_factory.mktemp("slice-beir") / "slice"
    write_beir(data, scifact_slice.corpus, scifact_slice.queries, {"test": scifact_slice.qrels})
    return data


def built_once(tmp_path_factory, name: str, build) -> Path:
    """The folder `build(folder)` fills, built once per test run even across pytest-xdist workers.

    A session fixture is per process, so two workers would each train or export the same thing (the slow tier
    runs on two); the first worker builds it under a file lock in the workers' common temporary folder, the
    other waits for it and reuses it (pytest-xdist's documented recipe for session-scoped data). Without
    workers it is an ordinary session folder.
    """
    import shutil

    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent                          # pytest-N/, shared by this run's popen-gw* folders
    out = root / f"once-{name}"
    with FileLock(f"{out}.lock"):
        if not (out / ".built").exists():
            shutil.rmtree(out, ignore_errors=True)   # a build that failed halfway is started over
            out.mkdir()
            build(out)
            (out / ".built").touch()
    return out


@pytest.fixture(scope="session")
def exported(tmp_path_factory, slice_beir):
    """The packaged MiniLM exported to ONNX (fp32 + int8, gated on the slice): (model folder, data, manifest).

    Shared by the export tests and the slim-install test (which indexes with it: a torch-free artifact)."""
    import json
    import shutil

    from honed.retriever.export.onnx import export_onnx
    from honed.retriever.models import resolve_model

    def build(root: Path) -> None:
        shutil.copytree(resolve_model("minilm"), root / "minilm")
        # parity on 60 texts and an 80-passage corpus, not 200 and the whole slice: each of the four encoders
        # (torch, fp32, two int8) encodes them all, on one thread in the slow tier's workers
        export_onnx(root / "minilm", data=str(slice_beir), n_parity=60, max_docs=80)

    model = built_once(tmp_path_factory, "onnx", build) / "minilm"
    return model, slice_beir, json.loads((model / "onnx" / "manifest.json").read_text())


# a real fine-tune small enough for a test (about a second per step on 2 cores): 128 tokens, not the
# default 256, halves every encode and step; sentence-transformers 6 keeps the limit in tokenizer_config.json
TINY = dict(max_steps=4, batch_size=8, eval_steps=2, max_mine_docs=150, dev_max_docs=60, patience=5,
            max_seq_length=128)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory, scifact_dir):
    """60 real SciFact train queries with their abstracts + 80 distractors, and 20 test queries."""
    from honed.retriever.data import load_beir, write_beir

    tr, te = load_beir(scifact_dir, "train"), load_beir(scifact_dir, "test")
    qs = sorted(tr.qrels)[:60]
    tq = sorted(te.qrels)[:20]
    docs = list(dict.fromkeys(sorted({d for q in qs for d in tr.qrels[q]}) + sorted(tr.corpus)[:80]))
    root = tmp_path_factory.mktemp("sf") / "tiny"
    write_beir(root / "train", {d: tr.corpus[d] for d in docs}, {q: tr.queries[q] for q in qs},
               {"train": {q: tr.qrels[q] for q in qs}})
    tdocs = sorted({d for q in tq for d in te.qrels[q]})
    write_beir(root / "test", {d: te.corpus[d] for d in tdocs}, {q: te.queries[q] for q in tq},
               {"test": {q: te.qrels[q] for q in tq}})
    return root


TUNED_RUN = dict(TINY, max_steps=-1, epochs=1, time_budget="30m")


@pytest.fixture(scope="session")
def tuned_run(tmp_path_factory, tiny_data):
    """The session's one real `honed finetune` run (TINY recipe, 128 tokens, one epoch under a roomy time budget,
    tracked in MLflow beside it): test_finetune's end-to-end test checks the run itself, and the tests that need
    *a* tuned model (export, merge, diagnose) use it. Tests of other recipes make their own."""
    from honed.retriever.finetune import FinetuneConfig, finetune

    def build(root: Path) -> None:
        finetune(FinetuneConfig(data=str(tiny_data), out=str(root / "runs" / "tiny"), **TUNED_RUN))

    return built_once(tmp_path_factory, "tuned", build) / "runs" / "tiny"


# -- the retrieval service as a real process --------------------------------------------------------

HONED = str(Path(sys.executable).with_name("honed"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`honed serve …` in a subprocess on a free port; `url`, `proc`, `wait_ready()`, `stop()`."""

    def __init__(self, args: list[str], db: Path, env: dict | None = None, log: Path | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args, self.db, self.env = args, db, env or {}
        self.log = log or db.with_suffix(".log")
        self._start = lambda: subprocess.Popen(
            [HONED, "serve", *args, "--port", str(self.port), "--db", str(db)],
            stdout=self.log.open("ab"), stderr=subprocess.STDOUT,
            env={**os.environ, **self.env})
        self.proc = self._start()

    def restart(self) -> None:
        self.proc = self._start()

    def wait_ready(self, timeout: float = 120.0) -> dict:
        import httpx

        from honed.app.serve.launch import wait_ready

        try:
            wait_ready(self.url + "/ready", self.proc, timeout)
        except RuntimeError as e:
            raise RuntimeError(f"{e}: {self.log.read_text()[-2000:]}") from None
        return httpx.get(self.url + "/ready", timeout=2).json()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


CHROMIUM = "/usr/bin/chromium"


class StreamlitCli:
    """A Streamlit page started through the real CLI (`honed app|annotate|dashboard …`) on a free port."""

    def __init__(self, args: list[str], log: Path, cwd: Path = REPO):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.proc = subprocess.Popen([sys.executable, "-m", "honed.app.cli", *args, "--port", str(self.port)],
                                     cwd=cwd, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                                     stdout=log.open("wb"), stderr=subprocess.STDOUT)

    def wait_healthy(self, timeout: float = 180.0) -> None:
        from honed.app.serve.launch import wait_ready

        try:
            wait_ready(f"{self.url}/_stcore/health", self.proc, timeout)
        except RuntimeError as e:
            pytest.fail(f"streamlit did not start ({e}): {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def chromium(pw):
    """Debian's chromium through Playwright, headless (no browser download). Missing is a failure, not a skip:
    `make browser` installs it, and a skipped browser test proves nothing."""
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian chromium is missing: `apt-get install -y chromium` (see README, Testing)")
    return pw.chromium.launch(executable_path=CHROMIUM, args=[
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"])
