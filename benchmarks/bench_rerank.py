"""Two-stage retrieval: a domain cross-encoder reranking the bi-encoder's top 50, against BM25, dense and hybrid.

Per dataset, in one run on this CPU: the rerankers are trained with ``train_reranker`` on the dataset's train
split (negatives mined with the first-stage model; MiniLM and, with ``--mpnet-steps``, mpnet-base as the
"large, slow" cross-encoder), exported to ONNX (int8 where its parity gate passes), then on the test split:

- ``bm25``, ``dense`` (the first stage), ``hybrid`` (the weighted fusion, dense weight chosen by 2-fold
  cross-fitting on the test queries, as in bench_hybrid.py) and ``dense+rerank-<ce>`` (top 50 reranked, the
  rest of the top 100 kept below it, so Recall@100 is the first stage's);
- nDCG@10, Recall@100, a paired test of each reranked system against the first stage;
- latency at batch 1 (p50/p99 over 50 queries, query encoding included, ONNX where exported) of the
  first stage, BM25, hybrid and each two-stage system at top 50, 20 and 10, and the nDCG@10 of reranking only
  the top 20 or 10 (mixed at the dev weight): what a tighter latency budget keeps.

Writes ``benchmarks/results/rerank.json``. Trained rerankers are kept under ``runs/bench-rerank/`` and reused.

    python benchmarks/bench_rerank.py                                  # cuad-clauses, ~25 min on 2 cores
    python benchmarks/bench_rerank.py --mpnet-steps 100 --only cuad-clauses   # + mpnet: ~2 h 10 min (EPYC, fp32)
    python benchmarks/bench_rerank.py --scifact ../shared/datasets/scifact --mpnet-steps 100
    python benchmarks/bench_rerank.py --scifact ../shared/datasets/scifact --only scifact --shallow-layers 2
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


# 2 epochs at 5e-5, 128 tokens: the classification head starts random, so the 2e-5 of cross-encoder recipes for
# million-pair sets leaves it undertrained here (300 steps at 2e-5 and 256 tokens reranked cuad-clauses test to
# 0.235 from the first stage's 0.447). mnrl with 4 negatives per pair, train_reranker's defaults since
# 2026-12-06: with bce and 1 negative the reranker alone scored SciFact's dev candidates 0.233 nDCG@10, with
# these 0.711 (first stage 0.724)
RECIPE = dict(epochs=2.0, lr=5e-5, max_length=128, num_negatives=4, loss="mnrl")


def reranker(data: Path, first_stage: str, base: str, out: Path, max_steps: int, **recipe) -> dict:
    """Train (unless already there) and export a reranker; its card and ONNX manifest."""
    from honed.retriever.atomic import read_json
    from honed.retriever.export.reranker_onnx import export_reranker_onnx
    from honed.retriever.finetune.reranker import train_reranker

    if not (out / "honed.json").is_file():
        train_reranker(str(data), out, base=base, first_stage=first_stage, max_steps=max_steps, force=True,
                       **{**RECIPE, **recipe})
    if not (out / "onnx" / "manifest.json").is_file():
        try:
            export_reranker_onnx(out, data=str(data))
        except Exception as e:   # an int8 model that failed its gate is kept, marked failed: fp32 runs
            print(f"export: {e}", flush=True)
    return {"card": read_json(out / "honed.json"), "onnx": read_json(out / "onnx" / "manifest.json")}


def latency(index, enc, texts: list[str], ce=None, top_n: int = 50) -> dict:
    from honed.retriever.fusion import search_modes
    from honed.retriever.reranker import rerank

    def one(t):
        hits = search_modes(index, enc.encode_queries([t]), [t], max(10, top_n if ce else 10), "dense")
        return rerank(index, ce, [t], hits, 10) if ce else hits

    one(texts[0])    # warm-up
    times = []
    for t in texts:
        t0 = time.perf_counter()
        one(t)
        times.append((time.perf_counter() - t0) * 1000)
    return {"p50_ms": round(float(np.percentile(times, 50)), 1), "p99_ms": round(float(np.percentile(times, 99)), 1)}


def mixed_with_tail(scored: list[tuple[int, float]], first: list[tuple[int, float]], weight: float,
                    top_n: int = 50) -> list[tuple[int, float]]:
    """The first stage's top `top_n` mixed with the reranker at `weight` (as an artifact serves them), the rest of
    its top 100 kept below in its own order, so Recall@100 stays the first stage's."""
    from honed.rag_eval.beir_eval import with_first_stage_tail
    from honed.retriever.mixing import weighted

    return with_first_stage_tail(weighted(scored[:top_n], first[:top_n], weight, top_n), first, top_n)


def crossfit_weights(scored, first, qids: list[str], qrels: dict, ids: dict, top_n: int = 50) -> dict:
    """The reranker weight chosen on one half of the test queries and applied to the other (2-fold cross-fitting,
    as bench_hybrid.py chooses its fusion weight): what choosing on held-out queries of the same kind gives."""
    from honed.retriever.reranker import best_weight, relevant_labels, weight_table

    relevant = relevant_labels({d: p for p, d in ids.items()}, qids, qrels)
    folds = [[i for i in range(len(qids)) if i % 2 == f] for f in (0, 1)]
    per_query, weights = [0.0] * len(qids), []
    for f in (0, 1):
        dev = folds[1 - f]
        w = best_weight(weight_table([scored[i][:top_n] for i in dev], [first[i][:top_n] for i in dev],
                                     [relevant[i] for i in dev]))["weight"]
        weights.append(w)
        for i in folds[f]:
            per_query[i] = w
    rows = weight_table([s[:top_n] for s in scored], [f[:top_n] for f in first], relevant)   # every test query
    return {"weights": weights, "per_query": per_query, "rows": rows}


def evaluate(name: str, path: Path, first_stage: str, label: str, rerankers: dict[str, Path], idx_dir: Path) -> dict:
    from bench_hybrid import hybrid_artifact, runs_by_mode
    from bench_hybrid import latency as mode_latency

    from honed.rag_eval.beir_eval import reranked
    from honed.retriever.atomic import read_json
    from honed.rag_eval.metrics import evaluate_run
    from honed.rag_eval.significance import paired_test
    from honed.retriever.data import load_beir
    from honed.retriever.index import open_index_and_encoder
    from honed.retriever.reranker import load_reranker

    ds = load_beir(path, "test")
    # the same artifacts as bench_hybrid.py (reused when there): dense + BM25 of the test corpus
    art = hybrid_artifact(ds, first_stage, idx_dir / f"{name}-test-{label}", idx_dir / "bench-hybrid" / f"{name}-{label}")
    index, enc = open_index_and_encoder(art)
    modes, weights = runs_by_mode(index, enc, ds)
    runs = {"bm25": modes["bm25"], "dense": modes["dense"], "hybrid": modes["hybrid-weighted"]}
    qids = sorted(ds.queries)
    texts = [ds.queries[q] for q in qids]
    from honed.retriever.fusion import search_modes

    first = search_modes(index, enc.encode_queries(texts), texts, 100, "dense")
    ids = {pos: d["id"] for pos, d in index.store.iter_docs()}
    lat = {"dense": latency(index, enc, texts[:50]), **mode_latency(index, enc, ds, modes=("bm25", "hybrid"), n=50)}
    mixes = {}
    for ce_name, folder in rerankers.items():
        t0 = time.perf_counter()
        scored = reranked(index, str(folder), texts, first, weight=1.0)     # top 50 by the reranker alone
        card = read_json(Path(folder) / "honed.json")
        dev_w = card["dev"]["mix"]["weight"]
        crossfit = crossfit_weights(scored, first, qids, ds.qrels, ids)
        mixes[ce_name] = {"dev_weight": dev_w, "crossfit_weights": crossfit["weights"],
                          "test_rows": crossfit["rows"]}
        for system, per_query in ((f"dense+rerank-{ce_name}", [1.0] * len(qids)),
                                  (f"dense+rerank-{ce_name}-dev", [dev_w] * len(qids)),
                                  (f"dense+rerank-{ce_name}-crossfit", crossfit["per_query"])):
            hits = [mixed_with_tail(sc, f, w) for sc, f, w in zip(scored, first, per_query)]
            runs[system] = {q: {ids[p]: s for p, s in h} for q, h in zip(qids, hits)}
        # fewer candidates reranked: what a tighter latency budget keeps of the gain (mixed at the dev weight)
        mixes[ce_name]["depth_ndcg@10"] = {}
        for n in (10, 20):
            tops = [{p for p, _ in f[:n]} for f in first]      # each query's first-stage top n, built once
            hits = [mixed_with_tail([x for x in sc if x[0] in top], f, dev_w, n)
                    for sc, f, top in zip(scored, first, tops)]
            run = {q: {ids[p]: s for p, s in h} for q, h in zip(qids, hits)}
            mixes[ce_name]["depth_ndcg@10"][str(n)] = round(evaluate_run(ds.qrels, run, (10,)).aggregate["NDCG@10"], 4)
        ce = load_reranker(folder)
        lat[f"dense+rerank-{ce_name}@50"] = {**latency(index, enc, texts[:50], ce, 50), "backend": ce.backend}
        lat[f"dense+rerank-{ce_name}@20"] = latency(index, enc, texts[:50], ce, 20)
        lat[f"dense+rerank-{ce_name}@10"] = latency(index, enc, texts[:50], ce, 10)
        print(name, ce_name, f"reranked {len(qids)} queries in {time.perf_counter() - t0:.0f} s", flush=True)
    metrics = {s: evaluate_run(ds.qrels, r, (10, 100)) for s, r in runs.items()}
    out = {"queries": len(qids), "passages": len(ds.corpus), "first_stage": first_stage,
           "hybrid_weights_per_fold": weights, "backend": enc.backend,
           "systems": {s: {"ndcg@10": round(m.aggregate["NDCG@10"], 4), "recall@100": round(m.aggregate["Recall@100"], 4)}
                       for s, m in metrics.items()},
           "vs_dense": {}, "latency_ms": lat, "mix": mixes}
    for s in runs:
        if s.startswith("dense+rerank"):
            t = paired_test(*({q: v["NDCG@10"] for q, v in metrics[x].per_query.items()} for x in ("dense", s)),
                            "NDCG@10").to_dict()
            out["vs_dense"][s] = {k: t[k] for k in ("delta", "ci_low", "ci_high", "p_value", "wins", "ties", "losses")}
            out["vs_dense"][s]["meets_target"] = t["delta"] >= 0.03    # issue #31: tuned + rerank ≥ tuned + 0.03
    index.store.close()
    print(name, json.dumps(out["systems"]), json.dumps(lat), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tuned", default="runs/ci", help="the demo's run (trained on cuad-clauses): cuad's first stage")
    ap.add_argument("--minilm-steps", type=int, default=-1, help="MiniLM cross-encoder steps (batch 16; -1: RECIPE's epochs)")
    ap.add_argument("--mpnet-steps", type=int, default=0, help="mpnet cross-encoder steps (0: not trained)")
    ap.add_argument("--shallow-layers", type=int, default=0, help="also a MiniLM cross-encoder of its first N "
                    "layers (`minilmN`: the latency side of the trade; 0: not trained)")
    ap.add_argument("--scifact", default=None, help="the full SciFact BEIR folder (first stage: base MiniLM)")
    ap.add_argument("--scifact-max-length", type=int, default=256, help="the SciFact reranker's tokens per pair "
                    "(abstracts run to ~300; 128 trains and reranks ~2x faster)")
    ap.add_argument("--batching", default="labels", help="the MiniLM rerankers' batches (labels | texts: "
                    "sentence-transformers' NO_DUPLICATES, train_reranker's default; a texts reranker is kept as "
                    "<set>-minilm-texts-ce)")
    ap.add_argument("--index-dir", default="indexes")
    ap.add_argument("--only", default=None, help="run this set only, keeping the others' entries in --result")
    ap.add_argument("--result", default=str(REPO / "benchmarks" / "results" / "rerank.json"))
    args = ap.parse_args()

    from honed.retriever.device import cpu_name

    runs = REPO / "runs" / "bench-rerank"
    # (name, data, first stage, its label, recipe overrides): SciFact abstracts run to ~300 tokens
    sets = [("cuad-clauses", REPO / "datasets" / "cuad-clauses", args.tuned, "tuned", {})]
    if args.scifact:
        # two SciFact train claims repeat test claims: dropped from training, as in the other SciFact benchmarks
        sets.append(("scifact", Path(args.scifact), "minilm", "base",
                     {"max_length": args.scifact_max_length, "drop_eval_overlap": True}))
    doc = {"benchmark": "rerank", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "cpu": cpu_name(), "top_n": 50, "datasets": {}}
    earlier = {}
    if args.only:   # the other sets keep the entries an earlier run of this script measured, each with its CPU
        prev = json.loads(Path(args.result).read_text(encoding="utf-8"))
        earlier = {n: {"cpu": prev["cpu"], **e} for n, e in prev["datasets"].items()}
        doc["datasets"] = dict(earlier)
        sets = [s for s in sets if s[0] == args.only]
    for name, path, first_stage, label, recipe in sets:
        t0 = time.perf_counter()
        recipe = {**recipe, "batching": args.batching}
        ces = {"minilm": runs / f"{name}-minilm{'' if args.batching == 'labels' else '-' + args.batching}-ce"}
        trained = {"minilm": reranker(path, first_stage, "minilm", ces["minilm"], args.minilm_steps, **recipe)}
        if args.shallow_layers:
            shallow = f"minilm{args.shallow_layers}"
            ces[shallow] = runs / f"{name}-{shallow}-ce"
            trained[shallow] = reranker(path, first_stage, "minilm", ces[shallow], args.minilm_steps,
                                        **{**recipe, "layers": args.shallow_layers})
        if args.mpnet_steps:
            ces["mpnet"] = runs / f"{name}-mpnet-ce"
            trained["mpnet"] = reranker(path, first_stage, "mpnet", ces["mpnet"], args.mpnet_steps, **recipe)
        entry = evaluate(name, path, first_stage, label, ces, Path(args.index_dir))
        entry["rerankers"] = {k: {"card": {x: v["card"][x] for x in ("base", "recipe", "triples",
                                                                     "triples_dropped_for_dev", "dev", "seconds")},
                                  "int8": v["onnx"].get("int8"), "parity": v["onnx"].get("parity")}
                              for k, v in trained.items()}
        entry["seconds"] = round(time.perf_counter() - t0, 1)
        entry["date"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        entry["cpu"] = cpu_name()
        if "batching_texts" in earlier.get(name, {}):   # measured apart (its own run, date and CPU): kept with the set
            entry["batching_texts"] = {"cpu": earlier[name]["cpu"], **earlier[name]["batching_texts"]}
        doc["datasets"][name] = entry
        Path(args.result).write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")   # each set as it ends
    print(f"wrote {args.result}")


if __name__ == "__main__":
    main()
