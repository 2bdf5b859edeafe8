"""Which concepts a retriever confuses: the other concepts' passages that outrank a query's first relevant one.

Concepts are labelled by :func:`honed.retriever.data.concepts.concept_labels` (query categories,
a passage metadata field, a query-id rule, or clusters). For each query the ranked list down to
its first relevant passage (within ``depth``) is read: every passage above it with another concept
is a confusion of the query's concept with that one. The *confusion rate* of a pair (A, B) is the
share of A's queries with at least one B passage above their first relevant passage. Unlabelled
passages above it are counted apart.

Example:
    >>> from honed.retriever.data import load_beir
    >>> from honed.retriever.data.concepts import concept_labels
    >>> from honed.rag_eval.confusion import concept_confusions
    >>> ds = load_beir("datasets/cuad-clauses", "test")
    >>> run = {"cap-on-liability-4": {"te000-001": 0.9, "te000-002": 0.8}}   # a system's ranked scores
    >>> concept_confusions(ds, run, concept_labels(ds))["queries"]
    1
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from honed.retriever.data.beir import BeirDataset, doc_text
from honed.retriever.data.concepts import ConceptLabels

UNLABELLED = "(unlabelled)"


def concept_confusions(ds: BeirDataset, run: dict[str, dict[str, float]], labels: ConceptLabels,
                       per_query: dict[str, dict[str, float]] | None = None, depth: int = 10,
                       examples: int = 2) -> dict:
    """One system's confusions on `ds`: pair rates, per-concept nDCG@10 and example queries and passages.

    `run` maps query id → {passage id: score}; `per_query` (query id → {"NDCG@10": …}) adds each
    concept's nDCG@10. Returns ``{"pairs": [...], "per_concept": {...}, "queries": n, ...}``.
    """
    by_pair: dict[tuple[str, str], list[dict]] = {}
    per_concept: dict[str, dict] = {}
    n = 0
    for q, c in sorted(labels.query.items()):
        rel = {d for d, g in ds.qrels.get(q, {}).items() if g > 0}
        if q not in run or not rel:
            continue
        n += 1
        ranked = sorted(run[q].items(), key=lambda kv: -kv[1])[:depth]
        first = next((i for i, (d, _) in enumerate(ranked) if d in rel), len(ranked))
        pc = per_concept.setdefault(c, {"queries": 0, "confused": 0, "unlabelled_above": 0, "ndcg": []})
        pc["queries"] += 1
        if per_query and q in per_query:
            pc["ndcg"].append(per_query[q]["NDCG@10"])
        others: dict[str, tuple[int, str]] = {}
        for rank, (d, _) in enumerate(ranked[:first], start=1):
            cs = labels.docs.get(d, ())
            if not cs:
                others.setdefault(UNLABELLED, (rank, d))
            for o in cs:
                if o != c and c not in cs:     # a passage that also carries the query's concept is no confusion
                    others.setdefault(o, (rank, d))
        pc["confused"] += any(o != UNLABELLED for o in others)
        pc["unlabelled_above"] += UNLABELLED in others
        for o, (rank, d) in others.items():
            if o != UNLABELLED:
                by_pair.setdefault((c, o), []).append({
                    "query": q, "query_text": ds.queries[q], "doc": d, "rank": rank,
                    "first_relevant_rank": first + 1 if first < len(ranked) else None,
                    "doc_text": doc_text(ds.corpus[d])[:240] if d in ds.corpus else ""})
    pairs = [{"concept": a, "confused_with": b, "queries": len(ex), "of": per_concept[a]["queries"],
              "rate": round(len(ex) / per_concept[a]["queries"], 4), "examples": ex[:examples]}
             for (a, b), ex in by_pair.items()]
    pairs.sort(key=lambda p: (-p["queries"], -p["rate"], p["concept"], p["confused_with"]))
    concepts = {c: {"queries": v["queries"], "confused_rate": round(v["confused"] / v["queries"], 4),
                    "unlabelled_above_rate": round(v["unlabelled_above"] / v["queries"], 4),
                    "ndcg@10": round(float(np.mean(v["ndcg"])), 4) if v["ndcg"] else None}
                for c, v in sorted(per_concept.items())}
    confused = sum(v["confused"] for v in per_concept.values())
    return {"queries": n, "depth": depth, "confused_rate": round(confused / n, 4) if n else None,
            "pairs": pairs, "per_concept": concepts}


def compare_confusions(by_system: dict[str, dict], baseline: str, top: int = 10) -> dict:
    """The `top` pairs the baseline confuses most, with every system's rate on each; and the pairs
    another system confuses more than the baseline does (what tuning made worse)."""
    rate = {s: {(p["concept"], p["confused_with"]): p for p in d["pairs"]} for s, d in by_system.items()}
    rows = []
    for key in list(rate[baseline])[:top]:     # the baseline's pairs, most confused first
        rows.append({"concept": key[0], "confused_with": key[1],
                     **{s: (rate[s][key]["rate"] if key in rate[s] else 0.0) for s in by_system},
                     "examples": rate[baseline][key]["examples"]})
    worse = {}
    for s in by_system:
        if s == baseline:
            continue
        grown = []
        for key, p in rate[s].items():
            before = rate[baseline][key]["rate"] if key in rate[baseline] else 0.0
            if p["rate"] > before:
                grown.append({"concept": key[0], "confused_with": key[1], baseline: before, s: p["rate"],
                              "delta": round(p["rate"] - before, 4), "examples": p["examples"]})
        grown.sort(key=lambda r: (-r["delta"], r["concept"], r["confused_with"]))
        worse[s] = grown[:top]
    return {"baseline": baseline, "top_pairs": rows, "grown": worse}


def plot_confusions(by_system: dict[str, dict], path: Path, top: int = 15) -> None:
    """Concept × concept confusion rates, one heatmap per system on the same axes (the most confused concepts)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    weight: Counter = Counter()
    for d in by_system.values():
        for p in d["pairs"]:
            weight[p["concept"]] += p["queries"]
            weight[p["confused_with"]] += p["queries"]
    concepts = [c for c, _ in weight.most_common(top)] or sorted(next(iter(by_system.values()))["per_concept"])[:top]
    ix = {c: i for i, c in enumerate(concepts)}
    size = 2.2 + 0.32 * len(concepts)
    fig, axes = plt.subplots(1, len(by_system), figsize=(size * len(by_system) + 1.2, size + 1.0), squeeze=False)
    image = None
    for ax, (name, d) in zip(axes[0], by_system.items()):
        m = np.zeros((len(concepts), len(concepts)))
        for p in d["pairs"]:
            if p["concept"] in ix and p["confused_with"] in ix:
                m[ix[p["concept"]], ix[p["confused_with"]]] = p["rate"]
        image = ax.imshow(m, vmin=0, vmax=1, cmap="Reds")
        ax.set_title(f"{name}: {d['confused_rate']:.0%} of queries confused" if d["confused_rate"] is not None
                     else name)
        short = [c if len(c) <= 24 else c[:23] + "…" for c in concepts]
        ax.set_xticks(range(len(concepts)), short, rotation=90, fontsize=7)
        ax.set_yticks(range(len(concepts)), short, fontsize=7)
        ax.set_xlabel("outranked by a passage of")
        ax.set_ylabel("query concept")
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.6, label="share of the concept's queries")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def confusion_markdown(cmp: dict, by_system: dict[str, dict], source: str) -> str:
    """The most-confused pairs and the per-concept nDCG@10 of every system, as Markdown."""
    from honed.retriever.display import markdown_literal as lit

    names = list(by_system)
    lines = [f"Concepts: {lit(source)}. A pair's rate is the share of the concept's queries with a passage of the "
             f"other concept above their first relevant passage (top {next(iter(by_system.values()))['depth']}).", "",
             "| query concept | outranked by | " + " | ".join(names) + " | example query |",
             "|---|---|" + "---:|" * len(names) + "---|"]
    for r in cmp["top_pairs"]:
        ex = r["examples"][0]["query_text"] if r["examples"] else ""
        lines.append(f"| {lit(r['concept'])} | {lit(r['confused_with'])} | "
                     + " | ".join(f"{r[n]:.2f}" for n in names) + f" | {lit(ex)} |")
    lines += ["", "| concept | queries | " + " | ".join(f"{n} nDCG@10" for n in names) + " |",
              "|---|---:|" + "---:|" * len(names)]
    first = by_system[names[0]]["per_concept"]
    for c in sorted(first, key=lambda c: first[c]["ndcg@10"] if first[c]["ndcg@10"] is not None else 0):
        vals = [by_system[n]["per_concept"].get(c, {}).get("ndcg@10") for n in names]
        lines.append(f"| {lit(c)} | {first[c]['queries']} | "
                     + " | ".join("—" if v is None else f"{v:.3f}" for v in vals) + " |")
    return "\n".join(lines) + "\n"
