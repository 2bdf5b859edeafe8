"""The evidence behind a release, gathered for the dashboard page: reports, model versions, curves, feedback.

Nothing here imports Streamlit. Sources, all optional:

- evaluation reports (``report.json`` from ``honed eval beir`` / ``honed demo`` and
  ``honed eval rag``), found under the folders given;
- the MLflow registry and runs (``runs/mlflow.db``): every registered model version,
  its aliases, and the run that trained it; a version is matched to report systems
  by its model fingerprint;
- run folders (``honed.json``, ``log_history.json``): training curves;
- the feedback store: the app's win rate and the service's click metrics.

Example:
    >>> from honed.app.dashboard import find_reports, metric_rows, query_deltas
    >>> reports = find_reports(["reports"])                          # doctest: +SKIP
    >>> metric_rows(reports[0].doc)[0]["NDCG@10"]                    # doctest: +SKIP
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from honed.retriever.finetune.tracking import training_log as training_curve  # noqa: F401  (the view reads it here)

HEADLINE = ("NDCG@10", "Recall@100", "MRR@10")


@dataclass
class Report:
    path: Path
    doc: dict

    @property
    def kind(self) -> str:
        return "rag" if self.doc.get("kind") == "rag" else "beir"

    @property
    def label(self) -> str:
        return f"{self.path.parent.name} ({self.kind}, {self.doc.get('created', '?')})"


def find_reports(paths: list[str | os.PathLike]) -> list[Report]:
    """Every readable honed report under `paths` (files or folders, searched recursively), newest first."""
    found: dict[Path, Report] = {}
    for p in map(Path, paths):
        files = [p] if p.is_file() else sorted(p.rglob("report.json")) if p.is_dir() else []
        for f in files:
            try:
                doc = json.loads(f.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue   # a half-written or foreign file is not evidence; the page lists what it could read
            if isinstance(doc, dict) and str(doc.get("schema", "")).startswith(("honed.report/", "honed.rag-report/")):
                found[f.resolve()] = Report(f, doc)
    return sorted(found.values(), key=lambda r: r.doc.get("created", ""), reverse=True)


def find_diagnoses(paths: list[str | os.PathLike]) -> list[Report]:
    """Every readable `honed diagnose` report (diagnosis.json) under `paths`, newest first."""
    found = []
    for p in map(Path, paths):
        for f in ([p] if p.is_file() and p.name == "diagnosis.json" else
                  sorted(p.rglob("diagnosis.json")) if p.is_dir() else []):
            try:
                doc = json.loads(f.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(doc, dict) and doc.get("kind") == "diagnosis" and isinstance(doc.get("findings"), list):
                found.append(Report(f, doc))
    return sorted(found, key=lambda r: r.path.stat().st_mtime, reverse=True)


def finding_rows(doc: dict) -> list[dict]:
    """The diagnosis's findings as table rows, most severe first."""
    return [{"#": i, "area": f.get("area", ""), "severity": f.get("severity"), "finding": f.get("title", ""),
             "act": f.get("action", "")} for i, f in enumerate(doc["findings"], 1)]


def confusion_rows(doc: dict, dataset: str) -> tuple[list[dict], list[dict]]:
    """(the pairs the baseline confuses most, with each system's rate; per-concept nDCG@10 by system)."""
    c = doc["confusion"][dataset]
    systems = list(c["per_concept"])
    pairs = [{"query concept": r["concept"], "outranked by": r["confused_with"],
              **{s: r.get(s) for s in systems},
              "example query": r["examples"][0]["query_text"] if r.get("examples") else ""}
             for r in c["compare"]["top_pairs"]]
    first = c["per_concept"][systems[0]]
    concepts = [{"concept": k, "queries": v["queries"],
                 **{f"{s} nDCG@10": c["per_concept"][s].get(k, {}).get("ndcg@10") for s in systems}}
                for k, v in sorted(first.items())]
    return pairs, concepts


def metric_rows(doc: dict, metrics=HEADLINE) -> list[dict]:
    """One row per (dataset, system) of a BEIR report: metrics, and Δ nDCG@10 vs the baseline with CI and p."""
    rows = []
    base = doc.get("baseline")
    for name, d in doc["datasets"].items():
        for system, sd in d["systems"].items():
            row = {"dataset": name, "role": d.get("role", "in-domain"), "system": system,
                   "model": sd.get("model") or "bm25", "queries": d.get("n_queries")}
            row.update({m: _r(sd["metrics"].get(m)) for m in metrics})
            t = d.get("significance", {}).get(system, {}).get("NDCG@10")
            if t:
                row.update({f"Δ nDCG@10 vs {base}": _r(t["delta"]), "95% CI": f"[{t['ci_low']:+.3f}, {t['ci_high']:+.3f}]",
                            "p": _r(t["p_value"], 4), "w/t/l": f"{t['wins']}/{t['ties']}/{t['losses']}"})
            rows.append(row)
    return rows


def answer_rows(answers: dict) -> list[dict]:
    """One row per (system, metric) of a retrieval report's answers (``report.json["answers"]``, the demo's)."""
    base = answers["baseline"]
    return [{"system": system, "metric": m, base: _r(t["mean_a"]), "value": _r(t["mean_b"]),
             f"Δ vs {base}": _r(t["delta"]), "95% CI": f"[{t['ci_low']:+.3f}, {t['ci_high']:+.3f}]",
             "p": _r(t["p_value"], 4), "w/t/l": f"{t['wins']}/{t['ties']}/{t['losses']}"}
            for system, tests in answers["tests"].items() for m, t in tests.items()]


def rag_rows(doc: dict) -> list[dict]:
    """One row per (system, metric) of a RAG report, with the paired test against its baseline."""
    from honed.rag_eval.rag import JUDGED

    rows = []
    for system, sd in doc["systems"].items():
        tests = doc.get("comparison", {}).get(system, {}).get("tests", {})
        for m, v in sd["metrics"].items():
            t = tests.get(m)
            rows.append({"system": system, "metric": m + (" *" if m in JUDGED else ""), "value": _r(v),
                         f"Δ vs {doc['baseline']}": _r(t["delta"]) if t else None,
                         "95% CI": f"[{t['ci_low']:+.3f}, {t['ci_high']:+.3f}]" if t else "",
                         "p": _r(t["p_value"], 4) if t else None})
    return rows


def query_deltas(doc: dict, dataset: str, system: str, baseline: str, metric: str = "NDCG@10") -> list[dict]:
    """Per query: the baseline's and the system's score and the difference, biggest losses first."""
    d = doc["datasets"][dataset]
    a, b = d["systems"][baseline]["per_query"], d["systems"][system]["per_query"]
    rows = [{"query_id": q, baseline: _r(a[q].get(metric)), system: _r(b[q].get(metric)),
             "Δ": _r(b[q].get(metric, 0) - a[q].get(metric, 0)), "query": _query_texts(d).get(q, "")}
            for q in a if q in b]
    return sorted(rows, key=lambda r: (r["Δ"], r["query_id"]))


def ranking(doc: dict, dataset: str, system: str, query_id: str) -> list[dict]:
    """A system's top 10 for one query, each passage marked with its qrels grade (None: not judged)."""
    d = doc["datasets"][dataset]
    qrels = d.get("qrels", {}).get(query_id, {})
    texts = _corpus_texts(d.get("path"), d.get("split", "test"))
    top = d["systems"][system].get("top10", {}).get(query_id, [])
    return [{"rank": i, "doc_id": doc_id, "score": score, "grade": qrels.get(doc_id),
             "text": texts.get(doc_id, "")} for i, (doc_id, score) in enumerate(top, 1)]


def model_versions(runs_dir: str | os.PathLike) -> list[dict]:
    """Every registered model version (newest first) with aliases, status and its run's dev nDCG@10."""
    if not (Path(runs_dir) / "mlflow.db").exists() and not os.environ.get("MLFLOW_TRACKING_URI"):
        return []
    from .registry import REGISTERED_NAME, _client

    client = _client(runs_dir)
    try:
        versions = client.search_model_versions(f"name = '{REGISTERED_NAME}'")
    except Exception:   # no registry in this store yet (MLflow raises several types)
        return []
    aliases: dict[str, list[str]] = {}
    if versions:   # versions exist, so the registered model does
        for alias, v in client.get_registered_model(REGISTERED_NAME).aliases.items():
            aliases.setdefault(str(v), []).append(alias)
    rows = []
    for mv in sorted(versions, key=lambda m: int(m.version), reverse=True):
        dev = None
        if mv.run_id:
            try:
                dev = client.get_run(mv.run_id).data.metrics.get("eval_dev_cosine_ndcg@10")
            except Exception:
                dev = None
        rows.append({"version": int(mv.version), "aliases": ", ".join(sorted(aliases.get(str(mv.version), []))),
                     "created": _ms(mv.creation_timestamp), "fingerprint": mv.tags.get("honed.model_fingerprint"),
                     "model_dir": mv.tags.get("honed.model_dir"), "status": mv.tags.get("honed.status"),
                     "dev nDCG@10": _r(dev)})
    return rows


def version_evidence(versions: list[dict], reports: list[Report], metric: str = "NDCG@10") -> list[dict]:
    """Each version's scores in the reports that evaluated it (by fingerprint), and its paired test vs the champion."""
    from honed.rag_eval.significance import paired_test

    champ = next((v for v in versions if "champion" in v["aliases"].split(", ")), None)
    rows = []
    for v in versions:
        for rep in reports:
            if rep.kind != "beir":
                continue
            for name, d in rep.doc["datasets"].items():
                by_fp = {sd.get("model_fingerprint"): (s, sd) for s, sd in d["systems"].items()}
                if v["fingerprint"] not in by_fp:
                    continue
                s, sd = by_fp[v["fingerprint"]]
                row = {"version": v["version"], "aliases": v["aliases"], "report": rep.path.parent.name,
                       "dataset": name, "system": s, metric: _r(sd["metrics"].get(metric))}
                if champ and champ is not v and champ["fingerprint"] in by_fp:
                    cs, csd = by_fp[champ["fingerprint"]]
                    t = paired_test({q: x[metric] for q, x in csd["per_query"].items()},
                                    {q: x[metric] for q, x in sd["per_query"].items()}, metric=metric)
                    row.update({"Δ vs champion": _r(t.delta), "95% CI": f"[{t.ci_low:+.3f}, {t.ci_high:+.3f}]",
                                "p": _r(t.p_value, 4)})
                rows.append(row)
    return rows


def run_folders(reports: list[Report], versions: list[dict]) -> dict[str, Path]:
    """Fine-tuned run folders the evidence names (report systems, registry versions) that hold a training log."""
    from honed.retriever.encoder import split_backend

    out: dict[str, Path] = {}
    for rep in reports:
        for d in (rep.doc.get("datasets") or {}).values():
            for sd in d["systems"].values():
                if sd.get("model"):
                    folder = split_backend(sd["model"])[0]      # "runs/demo@torch" names runs/demo
                    out.setdefault(folder, Path(folder))
    for v in versions:
        if v.get("model_dir"):
            out.setdefault(f"v{v['version']}", Path(v["model_dir"]))
    return {k: p for k, p in out.items() if (p / "log_history.json").is_file()}


def feedback_evidence(store) -> dict:
    """The app's win rate (Wilson 95%) and, where the service logged impressions, CTR and MRR per arm."""
    from .feedback import feedback_status

    st = feedback_status(store)
    return {"comparisons": st.comparisons, "candidate_wins": st.candidate_wins, "baseline_wins": st.baseline_wins,
            "ties": st.ties, "win_rate": st.candidate_win_rate, "win_rate_ci": st.win_rate_ci,
            "votes": st.votes, "clicks": st.clicks}


_TEXTS: dict[tuple, dict[str, str]] = {}


def _corpus_texts(path, split: str) -> dict[str, str]:
    """Passage texts of a report's dataset, where its folder is readable here (cached per path)."""
    if not path:
        return {}
    if (path, split) not in _TEXTS:
        from honed.retriever.data.beir import dataset_root, doc_text, read_corpus

        try:
            f = dataset_root(path, split) / "corpus.jsonl"
            _TEXTS[(path, split)] = {d: doc_text(v) for d, v in read_corpus(f).items()}
        except Exception:   # a moved or changed dataset: show ids without text rather than fail the page
            _TEXTS[(path, split)] = {}
    return _TEXTS[(path, split)]


def _query_texts(d: dict) -> dict[str, str]:
    if d.get("queries"):
        return d["queries"]
    f = Path(d.get("path") or "") / "queries.jsonl"      # a report written before reports kept the queries
    if not f.is_file():
        return {}
    out = {}
    for line in f.read_text(encoding="utf-8").splitlines():
        try:
            obj = json.loads(line)
            out[str(obj["_id"])] = obj.get("text", "")
        except (ValueError, KeyError, TypeError):
            continue
    return out


def _ms(ts) -> str:
    import datetime as _dt

    return _dt.datetime.fromtimestamp((ts or 0) / 1000, _dt.timezone.utc).isoformat(timespec="seconds")


def _r(x, nd: int = 4):
    return None if x is None else round(float(x), nd)
