"""Render measured numbers from the files the benchmarks wrote: no number in the README or the docs without its file.

Three outputs, all generated, never typed by hand:

- the README's "Headline numbers" table (between the ``numbers:start`` / ``numbers:end`` markers),
  from :data:`HEADLINES`: each row's values are read out of its ``benchmarks/results/*.json``;
- ``docs/numbers.md``: every results file with its date, machine and scalar results, so the docs
  site lists what each benchmark measured and when.

- ``docs/measurements.md``: the targets the issues set, one row each, rendered from :data:`TARGETS`.

``python docs/gen_numbers.py --readme`` rewrites the README block in place; without it, prints
``docs/numbers.md`` (``--page measurements``: ``docs/measurements.md``; ``make docs`` does all three). ``tests/test_docs.py`` fails when the README's
block differs from what this script renders, so an edited number or a re-run benchmark shows.

Example:
    python docs/gen_numbers.py --readme && python docs/gen_numbers.py > docs/numbers.md
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
START, END = "<!-- numbers:start -->", "<!-- numbers:end -->"


def at(doc, path: str):
    """The value at a dotted path ("service.batching on.32.throughput_qps"); keys may hold spaces."""
    for key in path.split("."):
        doc = doc[key]
    return doc


def _pct_p(p: float) -> str:
    if p == 0:      # a file that rounded its p-values to 4 places
        return "0.0000"
    return f"{p:.0e}".replace("e-0", "e-") if p < 1e-3 else f"{p:.3f}"


# (what, file, render(doc) -> the number as shown). Each reads its file, nothing else.
HEADLINES = [
    ("the demo's model (60 steps, with its domain router): nDCG@10 base → tuned in domain (cuad-clauses), and "
     "out of domain", "domain-routing.json", lambda d: _demo_headline(d)),
    ("cuad-qa answers vs references, base → the demo's retriever (paired, 29 questions, top 3)",
     "rag-cuad-qa-routed.json", lambda d: _answers_headline(d)),
    ("the HTTP service, 32 clients, batching on", "serve.json",
     lambda d: (lambda r: f"**{r['throughput_qps']:.0f} qps**, p50 {r['p50_ms']:.0f} ms")(
         at(d, "service.batching on.32"))),
    ("fine-tuning on 155k pairs (35 positives per query), `--time-budget 20m`", "many-positives.json",
     lambda d: f"peak RSS **{d['peak_rss_mb'] / 1000:.1f} GB** (≤ {d['target_peak_rss_mb'] / 1024:.0f} GB), "
               f"ended in {d['wall_s'] / 60:.1f} min"),
]



def _ok(flag) -> str:
    return {True: "✔", False: "✘", None: ""}[flag]


def _ood(d) -> dict:
    return next(v for k, v in d["slices"].items() if k.startswith("scifact-ood"))


def _hybrid(d, system: str):
    """Each (set, model) as `better single → hybrid`, ✘ where the hybrid is significantly worse."""
    cells, ok = [], True
    for name, ds in d["datasets"].items():
        for model, r in ds["models"].items():
            t = r["vs_better_single"][system]
            ok &= t["never_worse"]
            cells.append(f"{name}/{model} {r['systems'][r['better_single']]['ndcg@10']:.3f} ({r['better_single']}) → "
                         f"{r['systems'][system]['ndcg@10']:.3f}" + ("" if t["never_worse"] else f" (p = {t['p_value']:.3f})"))
    return "; ".join(cells), ok


# The targets the issues set, each row rendered from one results file: (area, target, file,
# render(doc) -> (result as shown, met: True / False / None where the file holds a measurement, not a target)).
TARGETS = [
    ("fine-tuning", "cuad-clauses test nDCG@10 ≥ 0.45 (60 steps, batch 32, one mined negative, lr 1e-4; the train split before contract questions)", "lr-cuad-1e-4.json",
     lambda d: (f"{d['base_ndcg@10']:.3f} → {d['tuned_ndcg@10']:.3f} (p = {_pct_p(d['p_value'])})",
                d["tuned_ndcg@10"] >= 0.45)),
    ("fine-tuning", "the demo's lr 5e-5 vs 1e-4: in domain, and out of domain through the release gate",
     "demo-lr-1e-4.json",
     lambda d: (f"1e-4: {d['in_domain']['tuned_ndcg@10']:.3f} in domain, SciFact slice "
                f"{d['out_of_domain']['significance']['delta']:+.3f} (p = {d['out_of_domain']['significance']['p_value']:.3f}): "
                f"gate {'passes' if d['gate']['passed'] else 'fails'}, so the demo keeps 5e-5", None)),
    ("fine-tuning", "SciFact ≥ 0.75 nDCG@10 within `--time-budget 20m`", "finetune-budget-scifact.json",
     lambda d: (f"{d['base_ndcg@10']:.3f} → {d['tuned_ndcg@10']:.3f} in {d['timing']['total_s'] / 60:.1f} min",
                d["tuned_ndcg@10"] >= 0.75 and d["timing"]["total_s"] <= 1200)),
    ("fine-tuning", "a model trained at 128 tokens reads whole passages: saved at the base's 256, not 128",
     "saved-length.json", lambda d: _saved_length(d)),
    ("fine-tuning", "SciFact, 3 epochs (no budget)", "finetune-bench-scifact-3ep.json",
     lambda d: (f"{d['base_ndcg@10']:.3f} → {d['tuned_ndcg@10']:.3f} (p = {_pct_p(d['p_value'])})", None)),
    ("fine-tuning", "CPU fine-tune at batch 32 under 4 GB (gradient cache)", "memory-cache.json",
     lambda d: (f"peak RSS {d['runs']['cache']['peak_rss_mb'] / 1024:.2f} GB, step {d['step_s_micro']['cache']:.1f} s "
                f"(no cache {d['step_s_micro']['off']:.1f} s)", d["runs"]["cache"]["peak_rss_mb"] < 4096)),
    ("fine-tuning", "155k pairs, 35 positives per query, under 4 GB", "many-positives.json",
     lambda d: (f"peak RSS {d['peak_rss_mb'] / 1024:.2f} GB in {d['wall_s'] / 60:.1f} min ({d['run_status']})",
                d["meets_target"])),
    ("fine-tuning", "hard-negative random fallback < 10% (cuad-clauses)", "mining.json",
     lambda d: (lambda c: (f"{c['rev']['random_fallback_rate']:.0%} before → {c['median']['random_fallback_rate']:.0%}",
                           c["median"]["random_fallback_rate"] < 0.10))(d["datasets"]["cuad-clauses"])),
    ("fine-tuning", "`--negatives confusable` vs `hard`, same run (kept only if it helps)", "confusable-negatives.json",
     lambda d: (f"{d['test']['confusable']['NDCG@10']:.4f} vs {d['test']['hard']['NDCG@10']:.4f} nDCG@10: "
                "no significant difference, `hard` stays the default", None)),
    ("fine-tuning", "no passage labelled relevant to a query among its in-batch negatives (`--batching labels`) vs "
                    "`NO_DUPLICATES` batches: the demo's recipe, three seeds; cuad-clauses ≥ 0.45 on each",
     "batching.json", lambda d: _batching(d)),
    ("fine-tuning", "MNRL without a query's labelled positives among its in-batch negatives (`--batching mask`, the "
                    "default) vs `NO_DUPLICATES` batches alone, the demo's recipe: cuad-clauses ≥ 0.45 on each seed, "
                    "no significant loss on cuad-qa or out of domain", "batching-mask.json", lambda d: _batching_mask(d)),
    ("fine-tuning", "synthetic queries only (labels withheld): a gain over base on cuad-clauses", "gpl-cuad.json",
     lambda d: (f"{d['base_ndcg@10']:.3f} → {d['tuned_ndcg@10']:.3f} (p = {d['p_value']:.3f})",
                d["delta_ndcg@10"] > 0 and d["p_value"] < 0.05)),
    ("fine-tuning", "synthetic queries only: a gain over base on SciFact", "gpl-scifact.json",
     lambda d: (f"{d['base_ndcg@10']:.3f} → {d['tuned_ndcg@10']:.3f} (p = {_pct_p(d['p_value'])})",
                d["delta_ndcg@10"] > 0 and d["p_value"] < 0.05)),
    ("fine-tuning", "synthetic queries only, SciFact, MNRL instead of the teacher's margins", "gpl-scifact-mnrl.json",
     lambda d: (f"{d['base_ndcg@10']:.3f} → {d['tuned_ndcg@10']:.3f} (p = {d['p_value']:.3f}): no loss, no gain", None)),
    ("evaluation", "cuad-qa answers: the tuned retriever does not lose (semantic similarity, paired)",
     "rag-cuad-qa-rerun.json",
     lambda d: (lambda t: (f"{t['mean_a']:.3f} → {t['mean_b']:.3f} ({t['delta']:+.3f}, p = {t['p_value']:.3f})",
                           not (t["delta"] < 0 and t["p_value"] < 0.05)))(
         at(d, "comparison.tuned.tests.semantic_similarity"))),
    ("evaluation", "cuad-qa answers, demo recipe trained without → with contract questions: no significant loss vs "
     "base (reference metrics, paired, no judge)", "rag-cuad-qa-contract-questions.json", lambda d: _answers(d)),
    ("evaluation", "cuad-qa answers, the demo's weights saved at 128 → 256 tokens: no significant loss vs base "
     "(reference metrics, paired, no judge)", "rag-cuad-qa-saved-length.json", lambda d: _answers(d)),
    ("evaluation", "cuad-qa answers from the top passage only (top 1, the demo's weights saved at 256): no "
     "significant loss vs base", "rag-cuad-qa-top1.json", lambda d: _answers(d)),
    ("evaluation", "cuad-qa answers, the demo's model with its domain router (lr 1e-4, top 3): no significant loss "
     "vs base (reference metrics, paired, no judge)", "rag-cuad-qa-routed.json", lambda d: _answers(d)),
    ("evaluation", "the demo's own answers step (`honed demo`, cuad-qa, no judge), on an empty answer cache: no "
     "significant loss vs base, and its time", "demo-answers.json",
     lambda d: (f"{d['wall_s'] / 60:.1f} min for {d['answers_generated']} answers ({d['answered_once_for_both']} "
                "questions answered once for both: same top 3); " + ", ".join(
                    f"{m} {t['delta']:+.3f} (p = {t['p_value']:.2f})" for m, t in d["tests"].items()
                    if m in ("semantic_similarity", "rouge_l", "context_recall_ids")), d["no_significant_loss"])),
    ("evaluation", "the local judge agrees with human labels (Cohen's kappa > 0.4)", "judge-calibration.json",
     lambda d: (f"accuracy {d['accuracy']:.2f}, kappa {d['kappa']:.2f} on {d['n']} labels: advisory only in the gate",
                d["kappa"] > 0.4)),
    ("evaluation", "an out-of-domain slice that detects a 0.03 drop", "ood-power.json",
     lambda d: (f"scifact-ood: power {_ood(d)['power_at_0.03']:.0%} at {_ood(d)['queries']} queries "
                f"({_ood(d)['queries_for_80pct_power']} for 80%); the demo model {_ood(d)['delta']:+.3f} there",
                _ood(d)["power_at_0.03"] >= 0.8)),
    ("evaluation", "merge back toward the base: in domain ≥ 0.45 with ≤ 0.01 lost out of domain", "merge-front.json",
     lambda d: ("no weight meets both" if not d["weights_meeting_issue_30_targets"] else
                f"weights {d['weights_meeting_issue_30_targets']}", bool(d["weights_meeting_issue_30_targets"]))),
    ("evaluation", "one training change that stops the forgetting: cuad-clauses ≥ 0.45, ≤ 0.01 lost on scifact-ood",
     "forgetting-families.json", lambda d: _forgetting(d)),
    ("evaluation", "domain routing (the router `honed finetune` keeps): cuad-clauses ≥ 0.45 with ≤ 0.01 lost on "
     "scifact-ood, alone and in one index with cuad-clauses", "domain-routing.json", lambda d: _routing(d)),
    ("evaluation", "the demo recipe, three seeds and four variants (router on): cuad-clauses ≥ 0.45; the variant "
     "chosen on dev", "demo-recipe.json", lambda d: _demo_recipe(d)),
    ("evaluation", "the demo recipe with its router on another domain (SciFact): a gain in domain, ≤ 0.01 lost out "
     "of domain (cuad-clauses)", "routing-scifact.json", lambda d: _routing_other(d)),
    ("evaluation", "contract questions in training: the demo confuses contracts on cuad-qa no more than the base",
     "contract-questions.json", lambda d: _contract_questions(d)),
    ("evaluation", "`honed diagnose` on the demo run", "diagnose-demo.json",
     lambda d: (f"{d['wall_s']:.0f} s; cuad-qa other-contract confusion {d['cuad_qa']['confused_rate']['base']:.0%} base → "
                f"{d['cuad_qa']['confused_rate']['tuned']:.0%} tuned", None)),
    ("serving", "ONNX int8 on a VNNI CPU: faster than torch at equal quality", "onnx-tuned-vnni.json",
     lambda d: (f"{d['onnx-int8-avx512-vnni_speedup_vs_torch']:.2f}× torch, nDCG@10 change "
                f"{-d['onnx-int8-avx512-vnni_ndcg_drop']:+.4f}",
                d["onnx-int8-avx512-vnni_speedup_vs_torch"] > 1 and d["onnx-int8-avx512-vnni_ndcg_drop"] <= 0.01)),
    ("serving", "slim install: venv ≤ 500 MB, torch-free, cold open + first query ≤ 1 s", "slim-install.json",
     lambda d: (f"{d['venv_mb']} MB, torch imported: {d['torch_imported']}, "
                f"{d['cold_open_and_first_query_s']['total_s']:.2f} s", all(d["meets"].values()))),
    ("serving", "artifact of 200k passages: cold open + first query", "artifact.json",
     lambda d: (f"{d['cuad_200k']['plain']['cold_open_first_query_s']:.2f} s plain, "
                f"{d['cuad_200k']['llamaindex']['cold_open_first_query_s']:.2f} s through LlamaIndex", None)),
    ("serving", "add / delete 1,000 passages in place vs a full rewrite (200k)", "artifact.json",
     lambda d: (f"{d['updates']['add_1000_s']:.2f} s / {d['updates']['delete_1000_s']:.2f} s vs "
                f"{d['updates']['full_rebuild_s']:.1f} s", None)),
    ("serving", "`honed serve`, 32 clients: batching on vs off", "serve.json",
     lambda d: (f"{d['service']['batching on']['32']['throughput_qps']:.0f} vs "
                f"{d['service']['batching off']['32']['throughput_qps']:.0f} qps",
                d["service"]["batching on"]["32"]["throughput_qps"] > d["service"]["batching off"]["32"]["throughput_qps"])),
    ("serving", "kill -9 under load: acknowledged feedback lost", "serve.json",
     lambda d: (f"{d['kill_test']['acknowledged_but_lost']} of {d['kill_test']['acknowledged']}, "
                f"ready {d['kill_test']['restart_to_ready_s']:.2f} s after restart",
                d["kill_test"]["acknowledged_but_lost"] == 0)),
    ("serving", "real Triton, 32 clients: dynamic batching on vs off", "triton.json",
     lambda d: (lambda on, off: (f"{on['throughput_qps']:.0f} vs {off['throughput_qps']:.0f} qps "
                                 f"({on['requests_per_execution']:.1f} requests per execution)",
                                 on["throughput_qps"] > off["throughput_qps"]))(
         d["levels"]["dynamic batching on"][-1], d["levels"]["dynamic batching off"][-1])),
    ("serving", "feedback store: 8 concurrent writers lose no vote", "feedback_store.json",
     lambda d: (f"{d['rows']} of {d['expected_rows']} rows, {d['votes_per_s']:.0f} votes/s", d["lost"] == 0)),
    ("scale", "full CUAD (41,500 passages): `--ray` equals one process", "ray.json",
     lambda d: (f"{d['runs']['one process']['docs_per_s']:.1f} vs {d['runs']['ray 2 workers']['docs_per_s']:.1f} "
                f"passages/s, vectors within {d['max_abs_vector_difference']:.1e}", d["same_ids"])),
    ("scale", "1M passages: index size and compute plan", "ray.json",
     lambda d: (f"IVF-PQ {d['plan_1m']['ivfpq_index_mb']:.0f} MB (flat {d['plan_1m']['flat_index_gb']:.2f} GB), "
                f"recall@10 {d['ivfpq']['recall_at_10']['32']:.2f} at nprobe 32; "
                f"{d['plan_1m']['minutes_on_4_gpus']:.1f} min on 4 GPUs", None)),
    ("retrieval modes", "hybrid (RRF) never worse than the better of BM25 and dense (by > 0.01, or significantly), every set",
     "hybrid.json", lambda d: _hybrid(d, "hybrid-rrf")),
    ("retrieval modes", "hybrid (weighted, weight chosen on held-out queries) never worse, every set",
     "hybrid.json", lambda d: _hybrid(d, "hybrid-weighted")),
    ("retrieval modes", "hybrid query latency at batch 1 (encoding included)", "hybrid.json",
     lambda d: ("; ".join(f"{n}/{m}: dense {r['latency_ms']['dense']['p50_ms']:.1f} ms, hybrid "
                          f"{r['latency_ms']['hybrid']['p50_ms']:.1f} ms p50 ({r['backend']})"
                          for n, ds in d["datasets"].items() for m, r in ds["models"].items() if m == "tuned"),
                None)),
    ("retrieval modes", "tuned + rerank ≥ tuned + 0.03 nDCG@10 (top 50 reranked by a domain cross-encoder)",
     "rerank.json", lambda d: _rerank(d)),
    ("retrieval modes", "the distilled student keeps ≥ 70% of the reranker's gain over the tuned bi-encoder, at the "
                        "bi-encoder's latency (SciFact)", "distill.json", lambda d: _distill(d)),
    ("retrieval modes", "the distilled student keeps ≥ 70% of the reranker's gain over the tuned bi-encoder, at the "
                        "bi-encoder's latency (cuad-clauses, from the demo's run)", "distill-cuad.json",
     lambda d: _distill(d, "cuad-clauses")),
    ("retrieval modes", "the same at full size, on every mined example (cuad-clauses, from the demo's run, MarginMSE "
                        "+ in-batch ranking): one epoch with the run's early stopping on its dev split",
     "distill-cuad-epoch.json", lambda d: _distill(d, "cuad-clauses")),
    ("retrieval modes", "the same, the whole epoch (no early stopping: the last model)", "distill-cuad-fullepoch.json",
     lambda d: _distill(d, "cuad-clauses")),
    ("retrieval modes", "the reranker's loss, chosen on dev (SciFact, MiniLM cross-encoder, first stage's top 30)",
     "reranker-loss.json",
     lambda d: ("; ".join(f"{n}: alone {v['alone_untrained_ndcg@10']:.3f} untrained → {v['alone_ndcg@10']:.3f}, mixed "
                          f"{v['mix_ndcg@10']:.3f} at weight {v['mix_weight']:.1f} ({v['seconds']} s)"
                          for n, v in d["variants"].items())
                + f"; the first stage's order {next(iter(d['variants'].values()))['first_stage_ndcg@10']:.3f}", None)),
    ("retrieval modes", "two-stage p50 ≤ 60 ms for top 50 on this CPU (batch 1, encoding included)", "rerank.json",
     lambda d: _two_stage_latency(d)),
    ("evaluation", "where the gain lives: test queries whose relevant passage was a training positive vs the others "
                   "(`honed diagnose`)", "trained-passages.json", lambda d: _trained_passages(d)),
    ("fine-tuning", "bf16 autocast on a CPU with native bf16: faster at the same quality", "cpu-bf16.json",
     lambda d: (f"{d['speedup']:.2f}× per step; test nDCG@10 " + ", ".join(
         f"{n} {v['fp32_ndcg@10']:.3f} → {v['bf16_ndcg@10']:.3f} (p = {v['bf16_minus_fp32']['p_value']:.2f})"
         for n, v in d["test"].items()), d["speedup"] > 1 and d["same_quality"])),
    ("CI", "`.ci/run` ≤ 30 min on a warm cache", "ci-stages.json",
     lambda d: ((f"**{d['total_s'] / 60:.1f} min**: " if d["complete"] else "incomplete run, stages: ")
                + ", ".join(f"{k} {v / 60:.1f}" for k, v in d["stages_s"].items())
                + (f" ({d['how']})" if d.get("how") else ""), d["meets_target"])),
    ("CI", "`make test` (fast tier) ≤ 6 min", "ci-stages.json",
     lambda d: (f"{d['stages_s']['test'] / 60:.1f} min", d["stages_s"]["test"] <= 360) if "test" in d["stages_s"]
     else ("not in this run's log", None)),
    ("app", "the comparison app: passages visible, first answer words", "app.json",
     lambda d: (f"p50 {d['passages_visible_s_p50']:.2f} s / {d['first_answer_words_s_p50']:.1f} s", None)),
    ("running where users are", "the portable llama.cpp build vs a native one (decode)", "llama-builds.json",
     lambda d: (lambda b: (f"{b[0]['extra_buffers_on']['decode_tokens_per_s']:.1f} vs "
                           f"{b[1]['extra_buffers_on']['decode_tokens_per_s']:.1f} tokens/s", None))(
         list(d["builds"].values()))),
]


REF_METRICS = ("semantic_similarity", "rouge_l")


def _ref_deltas(t: dict, names=REF_METRICS) -> str:
    """`metric Δ (p = …)` for the reference metrics of one paired RAG comparison."""
    return ", ".join(f"{n} {t[m]['delta']:+.3f} (p = {t[m]['p_value']:.2f})" for m, n in zip(REF_METRICS, names))


def _answers(d):
    """Reference-metric deltas vs the baseline for each system of a paired RAG report; met when none is a
    significant loss for the last system."""
    cells = [f"{name}: {_ref_deltas(cmp['tests'])}" for name, cmp in d["comparison"].items()]
    t = d["comparison"][list(d["comparison"])[-1]]["tests"]
    return "; ".join(cells), not any(t[m]["delta"] < 0 and t[m]["p_value"] < 0.05 for m in REF_METRICS)


def _contract_questions(d):
    """Confusion rate and nDCG@10 of the demo recipe without and with contract questions in its train split."""
    c, r = d["cuad_qa_contract_confusion"], d["ndcg@10"]
    cells = [f"cuad-qa other-contract confusion base {c['with']['base']:.0%}, without {c['without']['tuned']:.0%}, "
             f"with {c['with']['tuned']:.0%}"]
    for name in ("without", "with"):
        cells.append(f"{name}: cuad-clauses {r['cuad-clauses'][name]['ndcg@10']:.3f}, cuad-qa "
                     f"{r['cuad-qa'][name]['ndcg@10']:.3f}, scifact-ood Δ {r['scifact-ood'][name]['delta_vs_base']:+.3f}")
    return "; ".join(cells), c["with"]["tuned"] <= c["with"]["base"]


def _saved_length(d):
    """The same weights saved at the training length and at the base model's: nDCG@10 per set."""
    lo, hi = f"len-{min(d['lengths'])}", f"len-{max(d['lengths'])}"
    cells = [f"{ds} {r[lo]['ndcg@10']:.3f} → {r[hi]['ndcg@10']:.3f}" for ds, r in d["ndcg@10"].items()]
    return "same weights, " + ", ".join(cells), all(v >= 0 for v in d["change_when_saved_longer"].values())


def _forgetting(d):
    """Each variant as `in domain / out-of-domain Δ`, and where the first one's out-of-domain loss lives."""
    cd, ood = d["ndcg@10"]["cuad-clauses"], d["ndcg@10"]["scifact-ood"]
    names = [n for n in cd if n != "base"]
    cells = [f"{n} {cd[n]['ndcg@10']:.3f} / {ood[n]['delta_vs_base']:+.3f}" for n in names]
    side = ood[names[0]].get("by_side")
    if side:
        cells.append(f"{names[0]} on scifact-ood (base {ood['base']['ndcg@10']:.3f}): its queries over base passages "
                     f"{side['queries tuned, passages base']:.3f}, base queries over its passages "
                     f"{side['queries base, passages tuned']:.3f}")
    return "; ".join(cells), bool(d["meeting_issue_30_targets"])


def _shipped_router(r: dict) -> dict:
    """A run's rows with the router `honed finetune` saved in it, else with the shipped quantile refitted."""
    return r.get("run's router") or r["q0.002"]


def _routing(d):
    """Per run with its shipped router: in domain and out-of-domain Δ, tuned → routed."""
    cells, ok = [], False
    for name, r in d["results"].items():
        q = _shipped_router(r)
        c, o, m = q["cuad-clauses"], q["scifact-ood"], q["mixed: scifact-ood queries"]
        cells.append(f"{name}: cuad-clauses {c['tuned']:.3f} → {c['routed']:.3f}, cuad-qa {q['cuad-qa']['tuned']:.3f} → "
                     f"{q['cuad-qa']['routed']:.3f}, scifact-ood Δ {o['tuned_vs_base']['delta']:+.3f} → "
                     f"{o['routed_vs_base']['delta']:+.3f} (mixed index {m['routed_vs_base']['delta']:+.3f})")
        ok |= (c["routed"] >= 0.45 and o["routed_vs_base"]["delta"] >= -0.01
               and m["routed_vs_base"]["delta"] >= -0.01)
    return "; ".join(cells), ok


def _demo_recipe(d):
    """The seeds' range, each variant's test score, and the one its dev score picks among the seed-42 runs (one
    dev split; other seeds hold out other queries)."""
    cc = {n: r["ndcg@10"] for n, r in d["ndcg@10"]["cuad-clauses"].items() if n != "base"}
    seeds = [v for n, v in cc.items() if n.startswith("demo-seed")]
    same_split = [n for n, r in d["runs"].items() if "seed" not in r.get("overrides", {})]
    pick = max(same_split, key=lambda n: d["runs"][n]["dev_ndcg@10"])
    others = ", ".join(f"{n} {v:.3f}" for n, v in cc.items() if not n.startswith("demo-seed"))
    ood = d["ndcg@10"]["scifact-ood"][pick]["delta_vs_base"]
    return (f"seeds {min(seeds):.3f}–{max(seeds):.3f}; {others}; dev picks {pick}: {cc[pick]:.3f} "
            f"(scifact-ood {ood:+.3f}, {d['runs'][pick]['seconds']:.0f} s vs "
            f"{d['runs']['demo-seed7']['seconds']:.0f} s)", min(seeds) >= 0.45)


def _batching_mask(d):
    """The mask arm's in-domain score per seed and, per set, mask − texts on the seed-averaged scores."""
    cc = d["ndcg@10"]["cuad-clauses"]
    mask = [cc[n]["ndcg@10"] for n in cc if n.startswith("mask-")]
    texts = [cc[n]["ndcg@10"] for n in cc if n.startswith("texts-")]
    rows = {ds: r["mean over seeds"] for ds, r in d["mask_vs_texts"].items()}
    diff = "; ".join(f"{ds} Δ {r['delta']:+.3f} (CI [{r['ci'][0]:+.3f}, {r['ci'][1]:+.3f}], p = {_pct_p(r['p_value'])})"
                     for ds, r in rows.items())
    seeds = len(mask)
    return (f"cuad-clauses mask {', '.join(f'{v:.4f}' for v in mask)} vs texts {', '.join(f'{v:.4f}' for v in texts)} "
            f"({seeds} seed{'s' if seeds > 1 else ''}, "
            f"{'/'.join(sorted({r.get('precision') or '?' for r in d['runs'].values()}))} training); mask − texts: {diff}",
            min(mask) >= 0.45 and all(not (r["delta"] < 0 and r["p_value"] < 0.05) for r in rows.values()))


def _batching(d):
    """Each arm's in-domain score per seed, the seed-averaged paired difference per set, and the share of in-batch
    negatives that were labelled positives; met when every seed of the labels arm reaches 0.45 in domain."""
    cc = d["ndcg@10"]["cuad-clauses"]
    arms = {arm: [cc[n]["ndcg@10"] for n in cc if n.startswith(f"{arm}-")] for arm in ("labels", "texts")}
    diff = "; ".join(f"{ds} Δ {r['mean over seeds']['delta']:+.3f} (CI [{r['mean over seeds']['ci'][0]:+.3f}, "
                     f"{r['mean over seeds']['ci'][1]:+.3f}], p = {_pct_p(r['mean over seeds']['p_value'])})"
                     for ds, r in d["labels_vs_texts"].items())
    s = d["sampler"]["samplers"]
    first = next(k for k in s["labels (honed)"] if k.startswith("labelled_negatives_first"))
    return (f"cuad-clauses labels {', '.join(f'{v:.4f}' for v in arms['labels'])} vs texts "
            f"{', '.join(f'{v:.4f}' for v in arms['texts'])}; seed-averaged, labels − texts: {diff}; in-batch negatives "
            f"labelled relevant {s['texts (NO_DUPLICATES)'][first]:.1%} → {s['labels (honed)'][first]:.1%} in the "
            f"demo's {d['recipe']['max_steps']} steps ({s['labels (honed)']['labelled_negatives_epoch']:.1%} over an "
            "epoch)" + (f"; SciFact's train split: {d['sampler_scifact']['samplers']['texts (NO_DUPLICATES)'][first]:.2%}"
                        " with NO_DUPLICATES batches, so it changes little there" if d.get("sampler_scifact") else ""),
            min(arms["labels"]) >= 0.45)


def _routing_other(d):
    """Per set: base → routed (and unrouted), with the routed Δ; met when in domain gains and out of domain
    loses at most 0.01."""
    cells, ok = [], True
    for name, r in d["ndcg@10"].items():
        b, ro, un = r["base"], r["routed"], r["unrouted"]
        cells.append(f"{name} ({r['role']}): {b['ndcg@10']:.3f} → {ro['ndcg@10']:.3f} routed "
                     f"(Δ {ro['delta_vs_base']:+.3f}, p = {_pct_p(ro['p_value'])}), {un['ndcg@10']:.3f} without the router")
        ok &= ro["delta_vs_base"] >= -0.01 if r["role"] == "out-of-domain" else ro["delta_vs_base"] > 0
    return "; ".join(cells), ok


def _demo_headline(d):
    r = _shipped_router(d["results"]["demo"])
    c, o = r["cuad-clauses"], r["scifact-ood"]
    t = o["routed_vs_base"]
    held = t["delta"] >= -0.01 and t["ci"][0] >= -0.03
    return (f"{c['base']:.3f} → **{c['routed']:.3f}** (p = {_pct_p(c['routed_vs_base']['p_value'])}); scifact-ood "
            f"{o['base']:.3f} → {o['routed']:.3f} (CI of Δ [{t['ci'][0]:+.3f}, {t['ci'][1]:+.3f}]"
            + ("): **no loss out of domain**" if held else "): **it still forgets out of domain**")
            + f", where it lost {o['tuned_vs_base']['delta']:+.3f} without its domain router")


def _answers_headline(d):
    t = d["comparison"][list(d["comparison"])[-1]]["tests"]
    sig = [t[m]["delta"] for m in REF_METRICS if t[m]["p_value"] < 0.05]
    verdict = ("a significant loss" if any(x < 0 for x in sig) else "a significant gain" if sig
               else "no significant change")
    r = t["context_recall_ids"]
    recall = f"context recall {r['mean_a']:.3f} → {r['mean_b']:.3f}"
    if sig and min(sig) < 0 and r["mean_b"] > r["mean_a"]:
        recall = f"although the gold passage is retrieved more often ({recall})"
    return f"{_ref_deltas(t, ('semantic similarity', 'ROUGE-L'))}: {verdict}, {recall}"


def _rerank(d):
    """Each (set, reranker, weight) as `dense → reranked (Δ, p)`: alone, mixed at the weight chosen on its dev split
    (what an artifact ships with) and at the weight chosen on held-out test queries; met when on every set a
    shipped reranker gains ≥ 0.03 (the cells name each reranker's Δ, those that fall short included)."""
    cells, ok = [], True
    for name, ds in d["datasets"].items():
        shipped = [t for s, t in ds["vs_dense"].items() if s.endswith("-dev")] or list(ds["vs_dense"].values())
        ok &= any(t["meets_target"] for t in shipped)
        for system, t in ds["vs_dense"].items():
            ce = system.removeprefix("dense+rerank-").split("-")[0]
            r = ds["rerankers"][ce]["card"]["recipe"]      # sets measured at different times may differ in recipe
            layers = f", {r['layers']} layers" if r.get("layers") else ""
            # cards written before --batching trained with NO_DUPLICATES batches (texts)
            cells.append(f"{name}/{system.removeprefix('dense+rerank-')} ({r['loss']}, {r['num_negatives']} "
                         f"negatives{layers}, {r.get('batching', 'texts')} batches, {ds['date'][:10]}) over "
                         f"{ds['first_stage']}: {ds['systems']['dense']['ndcg@10']:.3f} → "
                         f"{ds['systems'][system]['ndcg@10']:.3f} (Δ {t['delta']:+.4f}, p = {_pct_p(t['p_value'])})")
        if "batching_texts" in ds:
            a = ds["batching_texts"]
            cells.append(f"{name}, the same reranker trained with texts batches (its own run, {a['date'][:10]}, "
                         f"{_cpu(a.get('cpu', d['cpu']))}): " + ", ".join(
                             f"{s.removeprefix('dense+rerank-')} Δ {v['delta']:+.4f}" for s, v in a["vs_dense"].items()))
    return "; ".join(cells), ok


def _two_stage_latency(d):
    """Per set and reranker: p50 at top 50, 20 (and 10, with the nDCG@10 reranking that few keeps, where measured)."""
    cells = []
    for n, ds in d["datasets"].items():
        for s, v in ds["latency_ms"].items():
            if not s.endswith("@50"):
                continue
            ce, lat = s.removeprefix("dense+rerank-")[:-3], ds["latency_ms"]
            depth = ds["mix"].get(ce, {}).get("depth_ndcg@10", {})
            shallow = "".join(f", {lat[s[:-3] + '@' + k]['p50_ms']:.0f} ms at top {k}"
                              + (f" (nDCG@10 {depth[k]:.3f})" if k in depth else "")
                              for k in ("20", "10") if s[:-3] + "@" + k in lat)
            cells.append(f"{n}/{ce}: {v['p50_ms']:.0f} ms at top 50 ({v['backend']}, nDCG@10 "
                         f"{ds['systems'].get(f'dense+rerank-{ce}-dev', {}).get('ndcg@10', float('nan')):.3f})"
                         f"{shallow}; first stage {lat['dense']['p50_ms']:.0f} ms "
                         f"({ds['systems']['dense']['ndcg@10']:.3f}), {_cpu(ds.get('cpu', d['cpu']))}")
    return "; ".join(cells), all(v["p50_ms"] <= 60 for ds in d["datasets"].values()
                                 for s, v in ds["latency_ms"].items() if s.endswith("@50"))


def _trained_passages(d):
    cells = []
    for name, e in d["datasets"].items():
        for sys_name, r in e["systems"].items():
            tp, ot = r["trained_passage"], r["other"]
            who = ("with the copy in train" if name.endswith("before-dedup") else "without it" if name.endswith("left-out")
                   else "trained without those passages" if sys_name == "control" else sys_name)
            cells.append(f"{name.split('-copy')[0].removesuffix('-before-dedup')} {who}: {tp['delta']:+.3f} on the "
                         f"{tp['n']} test queries whose passage the train split holds, {ot['delta']:+.3f} (p = {_pct_p(ot['p_value'])}) "
                         f"on the other {ot['n']}")
    return "; ".join(cells), None


def run_length(run: dict) -> str:
    """How long a run of a distillation file trained: its step cap, or one epoch, where early stopping on the run's
    dev split stopped it and which step it kept, or the whole epoch when it evaluated only at the end."""
    cap, steps = run["params"].get("max_steps") or -1, run["timing"]["steps"]
    if cap > 0:
        return f"{cap} steps"
    if (run["params"].get("eval_steps") or 0) >= steps:
        return f"one whole epoch, {steps} steps"
    best = run.get("best_step")
    return f"one epoch, stopped early at step {steps}" + (f" keeping step {best}, dev's best" if best else "")


def _distill(d, name: str = "SciFact"):
    """The student distilled from the tuned bi-encoder (the target) and, where trained, from base MiniLM, each against
    the two-stage system it learned: nDCG@10, the share of the reranker's gain kept, latency."""
    s, share, lat = d["systems"], d["share_of_gain_kept"], d["latency_ms"]

    def kept(k):
        if share[k]["kept"] is None:
            return "no gain to keep"
        return f"keeps {share[k]['kept']:.0%} of it" if share[k]["kept"] >= 0 else "keeps none of it (below the tuned model)"

    def student(system: str, share_key: str) -> str:
        """The student's nDCG@10 and run length, its paired test against the tuned model, the share kept, and its
        run's dev split."""
        t, run = d["tests"][f"{system} vs tuned"], d["runs"][system]
        return (f"{s[system]['ndcg@10']:.3f} after {run_length(run)} (Δ {t['delta']:+.3f}, "
                f"p = {_pct_p(t['p_value'])}): {kept(share_key)} (its run's dev split said {run['dev']['base']:.3f} → "
                f"{run['dev']['tuned']:.3f}, {run['status']})")

    if isinstance(d["from_tuned"], str):     # the run refused the teacher: what it said
        tuned = f"distilling the tuned model refused ({d['from_tuned']})"
    else:
        gain = s["tuned+rerank"]["ndcg@10"] - s["tuned"]["ndcg@10"]
        tuned = (f"tuned {s['tuned']['ndcg@10']:.3f}, tuned + rerank {s['tuned+rerank']['ndcg@10']:.3f} (gain "
                 f"{gain:+.3f})")
        if share.get("from tuned"):
            tuned += f", distilled from tuned {student('distilled-from-tuned', 'from tuned')}"
    if share.get("from tuned (distill-mnrl)"):
        tuned += ("; with in-batch ranking beside MarginMSE (`--loss distill-mnrl`): "
                  + student("distilled-from-tuned-mnrl", "from tuned (distill-mnrl)"))
    if "continued-from-tuned" in s:      # the control: as many more steps of the tuned model's own loss, no teacher
        t = d["tests"]["continued-from-tuned vs tuned"]
        run = d["runs"]["continued-from-tuned"]
        tuned += (f"; the control, the tuned model trained on as long without a teacher (MNRL): "
                  f"{s['continued-from-tuned']['ndcg@10']:.3f} after {run_length(run)} (Δ {t['delta']:+.3f}, "
                  f"p = {_pct_p(t['p_value'])}; dev "
                  f"{run['dev']['base']:.3f} → {run['dev']['tuned']:.3f})")
    base = ""
    if share.get("from base"):
        t = d["tests"]["distilled vs base"]
        base = (f"; from base MiniLM: base {s['base']['ndcg@10']:.3f}, base + rerank {s['base+rerank']['ndcg@10']:.3f}"
                f", distilled {s['distilled']['ndcg@10']:.3f} (Δ {t['delta']:+.3f}, p = {_pct_p(t['p_value'])}): "
                f"{kept('from base')}")
    student = next((k for k in ("distilled-from-tuned", "distilled-from-tuned-mnrl") if k in lat), "tuned")
    return (f"{name}: {tuned}{base}; p50 {lat[student]['p50_ms']:.0f} ms vs two-stage "
            f"{lat['tuned+rerank']['p50_ms']:.0f} ms ({d['date'][:10]}, {_cpu(d['cpu'])})"), \
        any(bool(share.get(k) and share[k]["meets_target"]) for k in ("from tuned", "from tuned (distill-mnrl)"))


def measurements_page() -> str:
    out = ["# Measured numbers", "",
           "Generated by `docs/gen_numbers.py` from `benchmarks/results/*.json` (`make docs`): each row is the target "
           "an issue set and what the file behind it measured; ✘ is a missed target, said so. Every file's date, "
           "machine and numbers are on [Results files](numbers.md); the script that wrote it is named in its "
           "section there and in `benchmarks/`.", "",
           "Fine-tuned cuad-clauses numbers in files written before the set was rebuilt (2026-12-06 17:14 UTC, commit 055e25a) were measured with a copy of one test contract "
           "in the train split (CUAD ships it twice; 14 of the 68 test queries found their passage in training). "
           "Trained without it, the demo's model gains as much on those 14 queries (`trained-passages.json`) and "
           "scores the same overall: the copy flattered nothing measurable, and the builds since leave it out. "
           "SciFact's fine-tuning gains are another matter: its test claims mostly cite abstracts training claims "
           "cite, and trained without those abstracts the tuned MiniLM's gain falls to about +0.02, not significant "
           "(`trained-passages.json`): the SciFact fine-tuning rows below measure gains that sit on abstracts the model "
           "trained on, which is what a system tuned on the corpus it serves gets.", ""]
    area = None
    for a, target, name, render in TARGETS:
        if a != area:
            out += ["", f"## {a}", "", "| target | result | met | file |", "|---|---|:-:|---|"]
            area = a
        doc = load(name)
        result, met = render(doc)
        date = str(doc.get("date") or doc.get("created") or doc.get("bench", {}).get("date") or "")[:10]
        out.append(f"| {target} | {result} | {_ok(met)} | [`{name}`](numbers.md#{Path(name).stem}) {date} |")
    out += two_stage_tables()
    return "\n".join(out) + "\n"


def load(name: str) -> dict:
    return json.loads((RESULTS / name).read_text(encoding="utf-8"))


# Issue #31's table rows, per dataset; a row no results file has is listed as not measured, with why.
TWO_STAGE_ROWS = ("BM25", "base", "tuned", "hybrid (tuned + BM25)", "tuned + rerank (MiniLM CE)",
                  "tuned + rerank (mpnet CE)", "distilled (from tuned)")
# per set: its distillation file, then files of other runs of it whose students join the table by run length
TWO_STAGE_SETS = {"cuad-clauses": ("distill-cuad.json", "distill-cuad-epoch.json", "distill-cuad-fullepoch.json"),
                  "scifact": ("distill.json",)}
NOT_MEASURED = {   # (set, row): why no file has it
    ("scifact", "tuned + rerank (mpnet CE)"): "bench_rerank.py's SciFact first stage is base MiniLM (base + rerank "
                                              "(mpnet CE) below); the mpnet cross-encoder's 100 steps took 23 min on "
                                              "the Xeon (bf16) and 93 min on the EPYC (fp32, cuad-clauses)",
    ("scifact", "hybrid (tuned + BM25)"): "bench_rerank.py's SciFact first stage is base MiniLM (hybrid over it below)",
}


def _cpu(text: str) -> str:
    return next((k for k in ("Xeon", "EPYC") if k in text), text.split(",")[0])


def _two_stage_rows(name: str) -> dict[str, tuple]:
    """{row label: (nDCG@10, Recall@100, latency entry, file, date, CPU)} from rerank.json's entry for `name` and
    the set's distillation files; rerank.json's first stage names its rows (base MiniLM or the tuned model), its
    rerankers count at the weight their dev split chose (what an artifact ships)."""
    rows = {}
    labels = {"base": "base", "tuned": "tuned", "base+rerank": "base + rerank (MiniLM CE)",
              "tuned+rerank": "tuned + rerank (MiniLM CE)", "distilled": "distilled (from base)",
              "distilled-from-tuned": "distilled (from tuned)",
              "distilled-from-tuned-mnrl": "distilled (from tuned, MarginMSE + in-batch ranking)",
              "continued-from-tuned": "tuned trained on as long, no teacher (control)"}
    others = TWO_STAGE_SETS[name][1:]
    for file in (f for f in TWO_STAGE_SETS[name] if (RESULTS / f).is_file()):
        d = load(file)
        for system, m in d["systems"].items():
            label = labels[system]
            if file in others:     # another run of the set: its students, told apart by how long they trained
                if system in ("base", "tuned", "base+rerank", "tuned+rerank"):
                    continue
                label += f", {run_length(d['runs'][system])}"
            rows[label] = (m["ndcg@10"], m["recall@100"], d["latency_ms"].get(system), file, d["date"], d["cpu"])
    r = load("rerank.json")
    e = r["datasets"].get(name)
    if e:
        first = "base" if e["first_stage"] == "minilm" else "tuned"
        lat = e["latency_ms"]
        runtime = {"bm25": "bm25s", "dense": e["backend"], "hybrid": e["backend"]}     # rerankers record theirs
        systems = {"bm25": ("BM25", "bm25"), "dense": (first, "dense"), "hybrid": (f"hybrid ({first} + BM25)", "hybrid")}
        for ce in e["rerankers"]:
            kind = "MiniLM" if ce == "minilm" else "mpnet" if ce == "mpnet" else f"MiniLM, {ce[6:]} layers"
            systems[f"dense+rerank-{ce}-dev"] = (f"{first} + rerank ({kind} CE)", f"dense+rerank-{ce}@50")
        for system, (label, lat_key) in systems.items():
            if label not in rows:      # the distillation run's row, where both measured it, shares its run
                m = e["systems"][system]
                t = lat.get(lat_key)
                rows[label] = (m["ndcg@10"], m["recall@100"], t and {"backend": runtime.get(system), **t},
                               "rerank.json", e["date"], e.get("cpu", r["cpu"]))
    return rows


def two_stage_tables() -> list[str]:
    """Per dataset: every system on the same test queries, with its latency at batch 1 and the file it came from."""
    out = ["", "## two-stage retrieval and distillation, per dataset", "",
           "Issue #31's tables: the test split's queries, nDCG@10 and Recall@100, query latency at batch 1 (query "
           "encoding included; a reranker scores the first stage's top 50), and the file each row comes from "
           "(`bench_rerank.py`, `bench_distill.py`). Rerankers are mixed with their first stage at the weight their "
           "dev split chose, as a packaged artifact serves them. Rows from one file share a run; latencies compare "
           "only within one CPU.", ""]
    for name in TWO_STAGE_SETS:
        rows = _two_stage_rows(name)
        out += [f"### {name}", "", "| system | nDCG@10 | Recall@100 | p50 ms | p99 ms | runtime | file |",
                "|---|--:|--:|--:|--:|---|---|"]
        for label in [*TWO_STAGE_ROWS, *sorted(set(rows) - set(TWO_STAGE_ROWS))]:
            if label not in rows:
                out.append(f"| {label} | — | — | — | — | | not measured: "
                           f"{NOT_MEASURED.get((name, label), 'no run yet')} |")
                continue
            ndcg, recall, lat, src, date, cpu = rows[label]
            p50, p99, runtime = (f"{lat['p50_ms']:.1f}", f"{lat['p99_ms']:.1f}", lat.get("backend", "")) if lat \
                else ("—", "—", "")
            out.append(f"| {label} | {ndcg:.4f} | {recall:.4f} | {p50} | {p99} | {runtime} | "
                       f"[`{src}`](numbers.md#{Path(src).stem}) {date[:10]}, {_cpu(cpu)} |")
        out.append("")
    return out


def headline_table() -> str:
    rows = ["| what | number | file |", "|---|---|---|"]
    for what, name, render in HEADLINES:
        rows.append(f"| {what} | {render(load(name))} | [`{name}`](benchmarks/results/{name}) |")
    return "\n".join(rows)


def readme_block() -> str:
    return f"{START}\n{headline_table()}\n{END}"


def update_readme(readme: Path) -> bool:
    """Put the rendered table between the markers; True if the file changed."""
    text = readme.read_text(encoding="utf-8")
    new = re.sub(re.escape(START) + r".*?" + re.escape(END), lambda _: readme_block(), text, flags=re.S)
    if new != text:
        readme.write_text(new, encoding="utf-8")
    return new != text


def _scalars(doc, prefix: str = "", depth: int = 0):
    """(dotted key, value) for the numbers (and booleans) of a results file, four levels deep."""
    if isinstance(doc, dict) and depth < 4:
        for k, v in doc.items():
            yield from _scalars(v, f"{prefix}{k}.", depth + 1)
    elif isinstance(doc, bool) or (isinstance(doc, (int, float)) and not isinstance(doc, bool)):
        yield prefix[:-1], doc


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def numbers_page() -> str:
    out = ["# Results files", "",
           "Generated by `docs/gen_numbers.py` from `benchmarks/results/*.json`: every file a benchmark wrote, "
           "with its date and machine and the numbers in it (four levels deep, at most 60 per file). The targets these numbers meet or miss "
           "are in [Measured numbers](measurements.md).", ""]
    for p in sorted(RESULTS.glob("*.json")):
        doc = json.loads(p.read_text(encoding="utf-8"))
        date = doc.get("date") or doc.get("created") or "—"
        machine = doc.get("cpu") or doc.get("machine") or "—"
        out += [f"## {p.stem}", "", f"`benchmarks/results/{p.name}` · {str(date)[:10]} · {machine}", ""]
        rows = [(k, v) for k, v in _scalars(doc) if k not in ("date",)][:60]
        if rows:
            out += ["| key | value |", "|---|---:|", *[f"| `{k}` | {_cell(v)} |" for k, v in rows], ""]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--readme", action="store_true", help="rewrite the README's headline table in place")
    ap.add_argument("--page", choices=("numbers", "measurements"), default="numbers",
                    help="which docs page to print: every results file, or the targets table")
    args = ap.parse_args(argv)
    if args.readme:
        update_readme(ROOT / "README.md")
        return 0
    sys.stdout.write(numbers_page() if args.page == "numbers" else measurements_page())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
