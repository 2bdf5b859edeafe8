"""Does routing passages by domain stop the demo's forgetting? Base vectors for passages unlike the training corpus.

Issue #30: the demo's tuned model loses ~0.03 nDCG@10 out of domain, and `honed diagnose` places the loss in the
passages: the tuned model's *queries* read the base model's passage vectors of scifact-ood as well as the base
model does (forgetting-families.json, `by_side`). So an index can keep the tuned vectors for passages like the
training corpus and the base model's vectors for the rest, while every query is read by the tuned model. This
measures that on cuad-clauses, cuad-qa (in domain), scifact-ood (out of domain) and on a *mixed* index holding
cuad-clauses' and scifact-ood's passages together (where tuned and base vectors compete in one ranking):

- the router is :func:`honed.retriever.routing.fit_router`, as `honed finetune` fits it: a passage's domain score is
  its base-model vector's cosine to the nearest of K k-means centroids of the training corpus's base vectors;
- the threshold: the given quantile of the scores of the run's dev passages (in domain, held out of training and of
  the centroids);
- systems: ``base``, ``tuned``, ``routed`` (tuned queries, routed passages) and ``routed-oracle`` (routed by the
  passage's true source, on the mixed index: what a perfect router would give).

    python benchmarks/bench_domain_routing.py --run demo=runs/demo --run lr-1e-4=runs/lr   # ~4 min a run on 2 cores
"""
from __future__ import annotations

import argparse
import json
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def encode_cached(enc, name: str, texts: list[str], cache: Path, queries: bool = False) -> np.ndarray:
    """`enc`'s vectors of `texts`, kept in `cache` (npy) so a re-run with another threshold encodes nothing."""
    f = cache / f"{name}.npy"
    if f.exists():
        v = np.load(f)
        if len(v) == len(texts):
            return v
    v = (enc.encode_queries if queries else enc.encode_documents)(texts, show_progress=True)
    np.save(f, v)
    return v


def ndcg(qrels, qids, qvecs, pids, pvecs, k: int = 10) -> tuple[float, dict]:
    from honed.rag_eval.metrics import evaluate_run

    scores = qvecs @ pvecs.T
    top = np.argsort(-scores, axis=1)[:, :100]
    run = {q: {pids[j]: float(scores[i, j]) for j in top[i]} for i, q in enumerate(qids)}
    m = evaluate_run(qrels, run, (k, 100))
    return round(m.aggregate[f"NDCG@{k}"], 4), {q: m.per_query[q][f"NDCG@{k}"] for q in qids}


def route_and_score(vec: dict, sets: dict, ref: np.ndarray, dev_vecs: np.ndarray, run: str, args) -> dict:
    """Per router (one per threshold quantile, and the run's own): nDCG@10 of base, tuned and routed on each set and
    on the mixed index."""
    from honed.rag_eval.significance import paired_test
    from honed.retriever.routing import fit_router, has_router, load_router

    def routed(v, router):
        keep = router.in_domain(v["p_base"])
        return np.where(keep[:, None], v["p_tuned"], v["p_base"]), keep

    # the mixed index: cuad-clauses' and scifact-ood's passages in one ranking
    a, b = vec["cuad-clauses"], vec["scifact-ood"]
    mixed = {"pids": a["pids"] + b["pids"],
             "p_base": np.vstack([a["p_base"], b["p_base"]]), "p_tuned": np.vstack([a["p_tuned"], b["p_tuned"]]),
             "in_domain": np.r_[np.ones(len(a["pids"]), bool), np.zeros(len(b["pids"]), bool)]}
    results = {}
    routers = [(f"q{qtl:g}", lambda qtl=qtl: fit_router(ref, dev_vecs, centroids=args.centroids, quantile=qtl))
               for qtl in [float(x) for x in args.quantiles.split(",")]]
    if has_router(run):       # the router `honed finetune` fitted and saved in the run: what ships
        routers.append(("run's router", lambda: load_router(run)[0]))
    for label, make in routers:
        router = make()
        row = {"threshold": round(router.threshold, 4), "routed_in_domain": {}}
        for name in sets:
            row["routed_in_domain"][name] = round(float(router.in_domain(vec[name]["p_base"]).mean()), 4)
        for name, ds in [*sets.items(), ("mixed: cuad-clauses queries", sets["cuad-clauses"]),
                         ("mixed: scifact-ood queries", sets["scifact-ood"])]:
            src = name.split(": ")[-1].removesuffix(" queries")
            v, q = (mixed if name.startswith("mixed") else vec[name]), vec[src]
            routed_p, _ = routed(v, router)
            systems = {"base": (q["q_base"], v["p_base"]), "tuned": (q["q_tuned"], v["p_tuned"]),
                       "routed": (q["q_tuned"], routed_p)}
            if name.startswith("mixed"):
                systems["routed-oracle"] = (q["q_tuned"], np.where(v["in_domain"][:, None], v["p_tuned"], v["p_base"]))
            per, out = {}, {}
            for s, (qv, pv) in systems.items():
                out[s], per[s] = ndcg(ds.qrels, q["qids"], qv, v["pids"], pv)
            for s in systems:
                if s != "base":
                    t = paired_test(per["base"], per[s])
                    out[f"{s}_vs_base"] = {"delta": round(t.delta, 4), "p_value": float(f"{t.p_value:.3g}"),
                                           "ci": [round(t.ci_low, 4), round(t.ci_high, 4)]}
            row[name] = out
        results[label] = row
        print(json.dumps({label: row}, indent=1))
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", action="append", required=True,
                    help="NAME=RUN: a tuned run trained on datasets/cuad-clauses' train split (repeatable)")
    ap.add_argument("--quantiles", default="0.002,0.005,0.01", help="dev-passage score quantiles tried as threshold")
    ap.add_argument("--centroids", type=int, default=64)
    ap.add_argument("--cache", default="/tmp/honed-routing-cache")
    ap.add_argument("--result", default=str(REPO / "benchmarks" / "results" / "domain-routing.json"))
    args = ap.parse_args()

    from honed.retriever.data.beir import load_beir
    from honed.retriever.device import cpu_name
    from honed.retriever.encoder import load_encoder

    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    runs = dict(spec.split("=", 1) for spec in args.run)
    t0 = time.perf_counter()
    base = load_encoder("minilm@torch")
    train = load_beir(REPO / "datasets" / "cuad-clauses", "train")
    dev = load_beir(Path(next(iter(runs.values()))) / "dev-split", "dev")      # the same seed: the same split
    sets = {"cuad-clauses": load_beir(REPO / "datasets" / "cuad-clauses", "test"),
            "cuad-qa": load_beir(REPO / "datasets" / "cuad-qa", "test"),
            "scifact-ood": load_beir(REPO / "datasets" / "scifact-ood", "test")}
    train_vecs = encode_cached(base, "train-base", [train.doc_text(d) for d in train.corpus], cache)
    # the dev passages come from the train split: fit the centroids without them, so their scores are held out
    ref = train_vecs[[d not in dev.corpus for d in train.corpus]]
    dev_vecs = encode_cached(base, "dev-base", [dev.doc_text(d) for d in dev.corpus], cache)
    results = {}
    for run_name, run in runs.items():
        tuned = load_encoder(f"{run}@torch", routing=False)
        tuned_cache = cache / Path(run).resolve().name       # base vectors are shared between runs
        tuned_cache.mkdir(parents=True, exist_ok=True)
        vec = {}
        for name, ds in sets.items():
            texts = [ds.doc_text(d) for d in ds.corpus]
            qtexts = [ds.queries[q] for q in ds.queries]
            vec[name] = {"pids": list(ds.corpus), "qids": list(ds.queries),
                         "p_base": encode_cached(base, f"{name}-p-base", texts, cache),
                         "p_tuned": encode_cached(tuned, f"{name}-p-tuned", texts, tuned_cache),
                         "q_base": encode_cached(base, f"{name}-q-base", qtexts, cache, queries=True),
                         "q_tuned": encode_cached(tuned, f"{name}-q-tuned", qtexts, tuned_cache, queries=True)}
        results[run_name] = {"run": run, **route_and_score(vec, sets, ref, dev_vecs, run, args)}
    encode_s = round(time.perf_counter() - t0, 1)

    res = {"benchmark": "domain-routing", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "cpu": cpu_name(), "centroids": args.centroids,
           "reference": f"datasets/cuad-clauses train corpus less the dev passages ({len(ref)} passages, base-model vectors)",
           "threshold_from": f"quantiles of {len(dev_vecs)} held-out dev passages' domain scores",
           "seconds": encode_s, "results": results}
    Path(args.result).write_text(json.dumps(res, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
