"""Data audit: the first diagnosis when fine-tuning disappoints.

Checks a BEIR dataset's train/test splits for

- **leakage**: exact (after normalisation) and near-duplicate (embedding cosine)
  queries shared by train and test, and test queries whose relevant passage is a
  training positive (queries are split, passages often are not);
- **qrels coverage**: judged queries, positives per query, unjudged queries;
- **lengths**: query and passage lengths in words and model tokens, and how many
  passages the model truncates;
- **label-noise hints**: positives the base model ranks very low for their query;
- **topic skew**: k-means over train query embeddings, top terms per cluster and
  the share of train vs test queries in each, so a skewed training set shows.

Writes ``report.md``, ``summary.json`` and PNG plots.

Example:
    >>> from honed.rag_eval.audit import audit_dataset
    >>> summary = audit_dataset("datasets/cuad-clauses", "reports/audit-cuad")  # doctest: +SKIP
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from honed.retriever.atomic import atomic_dir, check_writable
from honed.retriever.data.beir import BeirDataset, doc_text, load_beir
from honed.retriever.errors import DataError
from honed.retriever.finetune.pairs import normalise_text   # one rule for "the same query" everywhere

def load_splits(path: str | os.PathLike, splits=("train", "dev", "test")) -> dict[str, BeirDataset]:
    found = {}
    for s in splits:
        try:
            found[s] = load_beir(path, s)
        except DataError as e:
            if "no such split" not in str(e) and "no corpus.jsonl" not in str(e):
                raise
    if not found:
        raise DataError(f"{path}: no train/dev/test split found")
    return found


def find_leaks(train: dict[str, str], test: dict[str, str], train_vecs: np.ndarray, test_vecs: np.ndarray,
               threshold: float = 0.95) -> dict:
    """Exact-after-normalisation and near-duplicate (cosine ≥ threshold) train/test query pairs."""
    norm_train: dict[str, list[str]] = {}
    for q, t in train.items():
        norm_train.setdefault(normalise_text(t), []).append(q)
    exact = [{"test": q, "train": tq, "text": t} for q, t in test.items()
             for tq in norm_train.get(normalise_text(t), [])]
    exact_pairs = {(e["test"], e["train"]) for e in exact}
    near = []
    if len(train_vecs) and len(test_vecs):
        sims = test_vecs @ train_vecs.T
        tr_ids, te_ids = list(train), list(test)
        for i, j in zip(*np.nonzero(sims >= threshold)):
            if (te_ids[i], tr_ids[j]) not in exact_pairs:
                near.append({"test": te_ids[i], "train": tr_ids[j], "cosine": round(float(sims[i, j]), 4),
                             "test_text": test[te_ids[i]], "train_text": train[tr_ids[j]]})
    near.sort(key=lambda r: -r["cosine"])
    return {"threshold": threshold, "exact": exact, "near": near,
            "n_test_queries_leaked": len({r["test"] for r in exact} | {r["test"] for r in near})}


def passages_trained_on(train: BeirDataset, test: BeirDataset) -> dict[str, bool]:
    """For each judged test query, whether one of its relevant passages is also a training positive.

    Splitting a dataset by query leaves passages shared: SciFact's test claims cite abstracts that its train
    claims cite too (65% of the test queries). Fine-tuning on those pairs teaches the model those very
    passages, and its test gain there can be memory of them, which a search over passages no training pair
    covered does not get (`honed diagnose` splits the gain by this; on SciFact it was memory: trained without
    those abstracts, the tuned MiniLM's gain on those queries fell from +0.097 to +0.018 nDCG@10,
    benchmarks/results/trained-passages.json). Passages are matched by normalised text,
    so a train and a test folder with their own corpus files compare too.

        >>> from honed.rag_eval.audit import load_splits, passages_trained_on
        >>> s = load_splits("datasets/cuad-clauses")       # split by contract: no passage is in both
        >>> sum(passages_trained_on(s["train"], s["test"]).values())
        0
    """
    trained = {passage_key(train, d) for rel in train.qrels.values() for d, g in rel.items()
               if g > 0 and d in train.corpus}
    return {q: any(g > 0 and d in test.corpus and passage_key(test, d) in trained for d, g in rel.items())
            for q, rel in test.qrels.items()}


def passage_key(ds: BeirDataset, doc_id: str) -> str:
    """What makes two passages the same one across corpus files: their normalised text (title included)."""
    return normalise_text(doc_text(ds.corpus[doc_id]))


def topic_map(train_texts: list[str], train_vecs: np.ndarray, test_vecs: np.ndarray, k: int | None = None,
              seed: int = 0) -> dict:
    """k-means clusters of train queries; top terms; train vs test share per cluster."""
    from sklearn.cluster import KMeans
    from sklearn.feature_extraction.text import TfidfVectorizer

    n = len(train_texts)
    k = k or max(2, min(10, n // 15))
    k = min(k, n)
    km = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(train_vecs)
    train_lab = km.labels_
    test_lab = km.predict(test_vecs) if len(test_vecs) else np.array([], dtype=int)
    tfidf = TfidfVectorizer(stop_words="english", ngram_range=(1, 2), min_df=1)
    X = tfidf.fit_transform(train_texts)
    vocab = np.array(tfidf.get_feature_names_out())
    clusters = []
    for c in range(k):
        rows = train_lab == c
        weights = np.asarray(X[rows].mean(axis=0)).ravel()
        top = vocab[np.argsort(-weights)[:5]].tolist()
        tr_share = float(rows.mean())
        te_share = float((test_lab == c).mean()) if len(test_lab) else 0.0
        clusters.append({"cluster": c, "top_terms": top, "train": int(rows.sum()),
                         "test": int((test_lab == c).sum()), "train_share": round(tr_share, 4),
                         "test_share": round(te_share, 4)})
    # Skew: a cluster whose train share is ≥ 2× its test share (and ≥ 10% of train), or vice versa.
    skewed = [c["cluster"] for c in clusters
              if (c["train_share"] >= 0.10 and c["train_share"] >= 2 * c["test_share"])
              or (c["test_share"] >= 0.10 and c["test_share"] >= 2 * c["train_share"])]
    p = np.array([c["train_share"] for c in clusters]) + 1e-9
    q = np.array([c["test_share"] for c in clusters]) + 1e-9
    m = (p + q) / 2
    js = float(0.5 * np.sum(p * np.log2(p / m)) + 0.5 * np.sum(q * np.log2(q / m)))
    return {"k": k, "clusters": clusters, "skewed_clusters": skewed, "js_divergence": round(js, 4),
            "train_labels": train_lab.tolist(), "test_labels": test_lab.tolist()}


def label_noise(ds: BeirDataset, encoder, max_docs: int = 2000, rank_threshold: float = 0.2,
                seed: int = 0) -> dict:
    """Positives the base model ranks in the bottom of a candidate pool for their own query.

    The pool is every positive plus up to `max_docs` random passages (so the
    audit stays cheap on large corpora); a positive whose rank is worse than
    `rank_threshold` × pool size is a hint of a wrong or weak label.
    """
    rng = np.random.default_rng(seed)
    positives = sorted({d for rel in ds.qrels.values() for d, g in rel.items() if g > 0})
    others = [d for d in ds.corpus if d not in set(positives)]
    extra = rng.choice(len(others), size=min(max_docs, len(others)), replace=False) if others else []
    pool = positives + [others[i] for i in sorted(extra)]
    dvecs = encoder.encode_documents([doc_text(ds.corpus[d]) for d in pool], show_progress=True)
    qids = list(ds.queries)
    qvecs = encoder.encode_queries([ds.queries[q] for q in qids])
    sims = qvecs @ dvecs.T
    pos_index = {d: i for i, d in enumerate(pool)}
    ranks, suspects = [], []
    for qi, q in enumerate(qids):
        order = np.argsort(-sims[qi])
        rank_of = np.empty(len(pool), dtype=int)
        rank_of[order] = np.arange(1, len(pool) + 1)
        for d, g in ds.qrels[q].items():
            if g <= 0:
                continue
            r = int(rank_of[pos_index[d]])
            ranks.append(r)
            if r > rank_threshold * len(pool):
                suspects.append({"query": q, "doc": d, "rank": r, "pool": len(pool),
                                 "query_text": ds.queries[q], "doc_text": doc_text(ds.corpus[d])[:200]})
    suspects.sort(key=lambda s: -s["rank"])
    return {"pool_size": len(pool), "positives": len(ranks), "median_rank": float(np.median(ranks)) if ranks else None,
            "suspects": suspects, "suspect_rate": round(len(suspects) / max(len(ranks), 1), 4)}


def _lengths(texts: list[str], tokenizer, cap: int) -> dict:
    words = np.array([len(t.split()) for t in texts])
    toks = np.array([len(e) for e in tokenizer(texts, add_special_tokens=True)["input_ids"]]) if texts else np.array([0])
    pct = lambda a, p: float(np.percentile(a, p)) if len(a) else 0.0
    return {"n": len(texts), "words_p50": pct(words, 50), "words_p95": pct(words, 95),
            "tokens_p50": pct(toks, 50), "tokens_p95": pct(toks, 95), "tokens_max": int(toks.max()),
            "truncated_share": round(float((toks > cap).mean()), 4), "token_cap": cap,
            "_tokens": toks.tolist()}


def audit_dataset(path: str | os.PathLike, out: str | os.PathLike, model: str = "minilm",
                  near_threshold: float = 0.95, k: int | None = None, max_docs: int = 2000,
                  force: bool = False) -> dict:
    """Audit a BEIR dataset folder; write report.md, summary.json and plots to `out`."""
    from honed.retriever.encoder import load_encoder

    check_writable(out, "audit", force)
    splits = load_splits(path)
    enc = load_encoder(model, backend="torch")
    tok = enc.model.tokenizer
    train = splits.get("train")
    test = splits.get("test") or splits.get("dev")
    summary: dict = {"dataset": str(path), "model": model, "splits": {}}
    vecs = {}
    for name, ds in splits.items():
        all_q = ds.queries
        vecs[name] = enc.encode_queries(list(all_q.values()))
        pos_per_q = [sum(1 for g in rel.values() if g > 0) for rel in ds.qrels.values()]
        summary["splits"][name] = {
            "queries": len(ds.queries), "docs": len(ds.corpus),
            "judgements": sum(len(r) for r in ds.qrels.values()),
            "positives_per_query": {"min": int(min(pos_per_q)), "median": float(np.median(pos_per_q)),
                                    "max": int(max(pos_per_q))},
            "docs_judged_share": round(len({d for r in ds.qrels.values() for d in r}) / len(ds.corpus), 4),
            "queries_without_positive": sum(1 for n in pos_per_q if n == 0),
            "query_lengths": _lengths(list(ds.queries.values()), tok, enc.max_seq_length),
            "passage_lengths": _lengths([doc_text(d) for d in ds.corpus.values()], tok, enc.max_seq_length),
        }
    if train is not None and test is not None:
        summary["leakage"] = find_leaks(train.queries, test.queries, vecs["train"],
                                        vecs["test" if "test" in splits else "dev"], near_threshold)
        seen = passages_trained_on(train, test)
        summary["leakage"]["passages"] = {"test_queries": len(seen), "with_trained_passage": sum(seen.values())}
        summary["topics"] = topic_map(list(train.queries.values()), vecs["train"],
                                      vecs["test" if "test" in splits else "dev"], k=k)
    noise_split = test if test is not None else train
    summary["label_noise"] = label_noise(noise_split, enc, max_docs=max_docs)
    summary["label_noise"]["split"] = noise_split.split

    out = Path(out)
    with atomic_dir(out, kind="audit", force=force) as tmp:
        plots = _audit_plots(summary, splits, vecs, tmp)
        clean = json.loads(json.dumps(summary, default=float))
        for s in clean["splits"].values():
            s["query_lengths"].pop("_tokens", None)
            s["passage_lengths"].pop("_tokens", None)
        if "topics" in clean:
            clean["topics"].pop("train_labels", None)
            clean["topics"].pop("test_labels", None)
        clean["plots"] = plots
        (tmp / "summary.json").write_text(json.dumps(clean, indent=1) + "\n", encoding="utf-8")
        (tmp / "report.md").write_text(_audit_markdown(clean), encoding="utf-8")
    return clean


def _audit_plots(summary: dict, splits: dict, vecs: dict, folder: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for ax, key, title in ((axes[0], "query_lengths", "query length"), (axes[1], "passage_lengths", "passage length")):
        for name, s in summary["splits"].items():
            ax.hist(s[key]["_tokens"], bins=30, alpha=0.6, label=name)
        cap = next(iter(summary["splits"].values()))[key]["token_cap"]
        if key == "passage_lengths":
            ax.axvline(cap, color="red", lw=1, ls="--", label=f"model cap {cap}")
        ax.set_xlabel(f"{title} (tokens)")
        ax.set_ylabel("count")
        ax.legend()
    fig.tight_layout()
    fig.savefig(folder / "lengths.png", dpi=110)
    plt.close(fig)
    made.append("lengths.png")

    if "topics" in summary:
        t = summary["topics"]
        labels = [f"{c['cluster']}: {', '.join(c['top_terms'][:2])}" for c in t["clusters"]]
        x = np.arange(len(labels))
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
        axes[0].barh(x - 0.2, [c["train_share"] for c in t["clusters"]], 0.4, label="train")
        axes[0].barh(x + 0.2, [c["test_share"] for c in t["clusters"]], 0.4, label="test")
        axes[0].set_yticks(x, labels, fontsize=8)
        axes[0].invert_yaxis()
        axes[0].set_xlabel("share of queries")
        axes[0].set_title(f"topic clusters (JS divergence {t['js_divergence']:.3f})")
        axes[0].legend()
        from sklearn.decomposition import PCA

        test_key = "test" if "test" in vecs else "dev"
        both = np.vstack([vecs["train"], vecs[test_key]])
        xy = PCA(n_components=2, random_state=0).fit_transform(both)
        n_tr = len(vecs["train"])
        axes[1].scatter(xy[:n_tr, 0], xy[:n_tr, 1], c=t["train_labels"], cmap="tab10", s=12, marker="o", label="train")
        axes[1].scatter(xy[n_tr:, 0], xy[n_tr:, 1], c=t["test_labels"], cmap="tab10", s=30, marker="x", label="test")
        axes[1].set_title("query embeddings (PCA), colour = cluster")
        axes[1].legend()
        fig.tight_layout()
        fig.savefig(folder / "topics.png", dpi=110)
        plt.close(fig)
        made.append("topics.png")
    return made


def _audit_markdown(s: dict) -> str:
    L = [f"# Data audit: {s['dataset']}", "", f"Model for embeddings and ranks: `{s['model']}`.", "",
         "## Splits", "", "| split | queries | docs | judgements | positives/query (min/median/max) | "
         "docs judged | query tokens p50/p95 | passage tokens p50/p95/max | passages truncated |",
         "|---|---:|---:|---:|---|---:|---|---|---:|"]
    for name, x in s["splits"].items():
        p, ql, pl = x["positives_per_query"], x["query_lengths"], x["passage_lengths"]
        L.append(f"| {name} | {x['queries']} | {x['docs']:,} | {x['judgements']:,} | {p['min']}/{p['median']:g}/{p['max']} "
                 f"| {x['docs_judged_share']:.1%} | {ql['tokens_p50']:.0f}/{ql['tokens_p95']:.0f} "
                 f"| {pl['tokens_p50']:.0f}/{pl['tokens_p95']:.0f}/{pl['tokens_max']} | {pl['truncated_share']:.1%} |")
    L += ["", "![lengths](lengths.png)", ""]
    if "leakage" in s:
        lk = s["leakage"]
        L += ["## Leakage (train ↔ test)", "",
              f"- exact duplicates after normalisation: **{len(lk['exact'])}**",
              f"- near duplicates (cosine ≥ {lk['threshold']}): **{len(lk['near'])}**",
              f"- test queries affected: **{lk['n_test_queries_leaked']}**",
              f"- test queries whose relevant passage is a training positive: "
              f"**{lk['passages']['with_trained_passage']}** of {lk['passages']['test_queries']} (a tuned model's "
              "gain on them may be memory of those passages: `honed diagnose` splits it)", ""]
        for e in lk["exact"][:10]:
            L.append(f"  - exact: test `{e['test']}` = train `{e['train']}`: “{e['text'][:100]}”")
        for e in lk["near"][:10]:
            L.append(f"  - near ({e['cosine']:.3f}): test `{e['test']}` “{e['test_text'][:80]}” ~ train `{e['train']}` “{e['train_text'][:80]}”")
        L.append("")
    if "topics" in s:
        t = s["topics"]
        L += ["## Topic map of training queries", "",
              f"k-means with k={t['k']} on train query embeddings; test queries assigned to the nearest centroid. "
              f"Jensen–Shannon divergence of the two distributions: **{t['js_divergence']:.3f}** (0 = same, 1 = disjoint). "
              f"Skewed clusters (one split's share ≥ 2× the other's and ≥ 10%): **{t['skewed_clusters'] or 'none'}**.", "",
              "| cluster | top terms | train | test | train share | test share |", "|---:|---|---:|---:|---:|---:|"]
        for c in t["clusters"]:
            flag = " ⚠" if c["cluster"] in t["skewed_clusters"] else ""
            L.append(f"| {c['cluster']}{flag} | {', '.join(c['top_terms'])} | {c['train']} | {c['test']} "
                     f"| {c['train_share']:.1%} | {c['test_share']:.1%} |")
        L += ["", "![topics](topics.png)", ""]
    n = s["label_noise"]
    L += ["## Label-noise hints", "",
          f"On the {n['split']} split, each positive is ranked by the base model among a pool of {n['pool_size']:,} passages "
          f"(all positives + random others). Median rank of positives: **{n['median_rank']}**; "
          f"**{len(n['suspects'])}** of {n['positives']} positives ({n['suspect_rate']:.1%}) rank below the top 20% of the pool.", ""]
    for x in n["suspects"][:10]:
        L.append(f"- rank {x['rank']}/{x['pool']}: `{x['query']}` “{x['query_text'][:80]}” → `{x['doc']}` “{x['doc_text'][:100]}…”")
    return "\n".join(L) + "\n"
