"""`honed finetune`, `honed adapt`, `honed merge`: make a tuned model."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.markup import escape

from honed.retriever.display import DataTable
from honed.retriever.errors import HonedError
from honed.retriever.extras import require_extra
from honed.retriever.finetune.config import FILTER_POOL, FinetuneConfig

from .common import FORCE, app, console

FT = FinetuneConfig()   # `honed finetune`'s flags take their defaults from the one definition of a run


def _with_config(ctx: typer.Context, config: Optional[Path]) -> dict:
    """Flags given on the command line win; the TOML `[finetune]` table (checked) fills the rest."""
    from click.core import ParameterSource

    from honed.retriever.finetune.config import read_finetune_table

    values = dict(ctx.params)
    values.pop("config", None)
    if config is None:
        return values
    for key, val in read_finetune_table(config).items():
        if key not in values:
            raise HonedError(f"{config}: [finetune] key {key!r} has no `honed finetune` flag")
        if ctx.get_parameter_source(key) != ParameterSource.COMMANDLINE:
            values[key] = val
    return values


@app.command("finetune")
def finetune_cmd(
    ctx: typer.Context,
    data: Optional[str] = typer.Option(FT.data, help="BEIR folder; its train split gives pairs"),
    pairs: List[str] = typer.Option(FT.pairs, help="extra pairs JSONL (synthetic, feedback); repeatable"),
    corpus: Optional[str] = typer.Option(FT.corpus, help="unlabelled passages (BEIR folder or corpus.jsonl) that join "
                                                    "the mining corpus and the dev distractors: the target corpus "
                                                    "of --pairs written by `honed data synth`"),
    corpus_split: str = typer.Option(FT.corpus_split, help="which corpus of a per-split --corpus"),
    base: str = typer.Option(FT.base, help="base model"),
    out: str = typer.Option(FT.out, help="run folder (a sentence-transformers model folder)"),
    loss: str = typer.Option(FT.loss, help="mnrl | cached-mnrl | matryoshka | distill | distill-mnrl "
                                                 "(MarginMSE on --teacher's margins, plus in-batch ranking)"),
    epochs: float = typer.Option(FT.epochs, min=0.0),
    max_steps: int = typer.Option(FT.max_steps, help="stop after N steps (overrides epochs)"),
    batch_size: int = typer.Option(FT.batch_size, min=1),
    mini_batch_size: int = typer.Option(FT.mini_batch_size, min=1, help="sequences per chunk of the cached loss "
                                                       "(cached-mnrl, --gradient-cache): memory, not results"),
    lr: float = typer.Option(FT.lr),
    max_seq_length: int = typer.Option(FT.max_seq_length, help="training length (tokens); the saved model reads "
                                      "the longer of this and the base model's own"),
    num_negatives: int = typer.Option(FT.num_negatives, help="mined hard negatives per pair (0 = in-batch only)"),
    relative_margin: float = typer.Option(FT.relative_margin, help="false-negative guard"),
    bm25_negatives: bool = typer.Option(FT.bm25_negatives, help="add BM25 candidates to the mined negatives"),
    batching: str = typer.Option(FT.batching, help="labels: no passage labelled relevant to a query is among its "
                                                    "in-batch negatives | mask: batches as texts, the loss leaves "
                                                    "those out | texts: only identical texts kept apart"),
    negatives: str = typer.Option(FT.negatives, help="hard | confusable: put first the mined negatives of the "
                                                      "concepts the base model confuses with the query's"),
    concepts: str = typer.Option(FT.concepts, help="concept labels for --negatives confusable: auto, query:FIELD, "
                                                    "doc:FIELD, id:REGEX or clusters[:K]"),
    max_mine_docs: int = typer.Option(FT.max_mine_docs, help="mining corpus size (positives + random)"),
    mine_max_seq_length: int = typer.Option(FT.mine_max_seq_length, help="passage length (tokens) when mining; 0 = as trained"),
    teacher: Optional[str] = typer.Option(FT.teacher, help="train a cross-encoder teacher from this base (minilm | mpnet), "
                                                              "or distil a reranker folder (`honed reranker train`) as it is"),
    allow_weaker_teacher: bool = typer.Option(FT.allow_weaker_teacher, help="distil a teacher that ranks the dev "
                                                                          "split no better than the base model"),
    dev_max_docs: int = typer.Option(FT.dev_max_docs, help="dev corpus size (dev positives + random)"),
    eval_steps: int = typer.Option(FT.eval_steps),
    patience: int = typer.Option(FT.patience, help="early-stopping patience, in evaluations"),
    seed: int = typer.Option(FT.seed),
    resume: bool = typer.Option(FT.resume, help="continue from the last checkpoint of a crashed run"),
    track: bool = typer.Option(FT.track, help="log to MLflow"),
    drop_eval_overlap: bool = typer.Option(FT.drop_eval_overlap, help="drop training queries equal to eval queries instead of refusing"),
    frozen_eval: List[str] = typer.Option(FT.frozen_eval, help="eval set (BEIR folder, e.g. from `honed annotate export`) whose "
                                                   "test queries and judged passages never enter training; repeatable"),
    time_budget: Optional[str] = typer.Option(FT.time_budget, help="wall-clock budget for the whole run (20m, 1h30m): plans "
                                                         "steps, subsamples pairs per query, stops on time with the best checkpoint"),
    device: Optional[str] = typer.Option(FT.device, help="auto (cuda > mps > cpu) | cpu | cuda | cuda:N | mps "
                                                    "(default $HONED_DEVICE, else auto); bf16/fp16 on CUDA"),
    precision: str = typer.Option(FT.precision, help="auto (bf16 on a GPU that has it and on a CPU with native bf16: "
                                                     "AVX512-BF16/AMX; else fp32) | fp32 | bf16 | fp16: training autocast"),
    gradient_checkpointing: str = typer.Option(FT.gradient_checkpointing, help="auto (on for the CPU from 256 tokens when the "
                                                            "gradient cache is off) | on | off: recompute activations in the "
                                                            "backward pass (same results, less memory, more compute)"),
    gradient_cache: str = typer.Option(FT.gradient_cache, help="auto (on for the CPU) | on | off: compute the mnrl loss "
                                                    "--mini-batch-size sequences at a time (GradCache: same "
                                                    "results, less memory, more compute)"),
    router: bool = typer.Option(FT.router, help="keep a domain router in the run: indexes built with it store the "
                                                "base model's vectors for passages unlike the training corpus, so the "
                                                "tuned model does not forget other domains (docs/diagnose.md)"),
    search: bool = typer.Option(FT.search, "--search", help="try a small space of recipes (loss and batch, lr, "
                                                         "negatives; distillation with --teacher) by successive "
                                                         "halving on the dev split within --time-budget; keep the best"),
    search_trials: int = typer.Option(FT.search_trials, help="recipes at the search's first rung"),
    config: Optional[Path] = typer.Option(None, help="TOML file with a [finetune] table of the same keys"),
    force: bool = FORCE,
) -> None:
    """Fine-tune an embedder on a domain (hard negatives, optional teacher distillation, optional recipe search)."""
    require_extra("train", "honed finetune")
    from honed.retriever.finetune import finetune

    values = _with_config(ctx, config)
    res = finetune(FinetuneConfig(**values))
    t = res.manifest["timing"]
    if "search" in res.manifest:
        console.print(f"search: {len(res.manifest['search']['trials'])} trials; kept "
                      f"{res.manifest['search']['chosen']}: {res.manifest['search']['why']}")
    console.print(f"dev nDCG@10: base {res.base_dev_ndcg:.4f} → tuned {res.dev_ndcg:.4f}  "
                  f"({t['steps']} steps, {t['seconds_per_epoch']} s/epoch, peak {t['peak_rss_mb']} MB)")
    if res.status != "ok":   # not bad input: the candidate lost, like a failed gate (exit 1)
        Console(stderr=True).print(f"[red]run marked failed:[/] {escape(res.reason)} (model kept in {res.out} "
                                   "for inspection)", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    console.print(f"[green]✓[/] model → {res.out}  (plot: {res.out / 'training.png'})")


@app.command("adapt")
def adapt_cmd(corpus: Path = typer.Option(..., help="the corpus to adapt to: BEIR folder or corpus.jsonl "
                                                     "(no labels read)"),
              out: str = typer.Option(..., help="run folder (a sentence-transformers model folder)"),
              split: str = typer.Option("train", help="which corpus of a per-split dataset"),
              max_docs: int = typer.Option(400, min=1, help="passages the LLM writes queries for"),
              per_doc: int = typer.Option(3, min=1, help="queries asked per passage"),
              llm: str = typer.Option("qwen", help="query writer: GGUF (packaged name or path) or an "
                                            "OpenAI-compatible URL#model (key from $OPENAI_API_KEY)"),
              filter_model: Optional[str] = typer.Option(None, help="embedder of the round-trip filter "
                                                                    "(default: mpnet for a MiniLM base, else minilm)"),
              filter_pool: int = typer.Option(FILTER_POOL, min=2, help="passages each query is ranked among in the "
                                                                "round-trip filter (its sources + random ones)"),
              base: str = typer.Option("minilm", help="base model"),
              teacher: str = typer.Option("minilm", help="cross-encoder teacher base (minilm | mpnet)"),
              loss: str = typer.Option("distill", help="distill (teacher margins, GPL) | mnrl (the synthetic "
                                                       "pairs and mined negatives, no teacher)"),
              allow_weaker_teacher: bool = typer.Option(False, help="distil a teacher that ranks the "
                                                                    "synthetic dev split no better than the base"),
              max_steps: int = typer.Option(-1, help="stop after N steps (overrides epochs)"),
              epochs: float = typer.Option(1.0, min=0.0),
              batch_size: int = typer.Option(32, min=1),
              lr: float = typer.Option(5e-5),
              max_seq_length: int = typer.Option(256),
              time_budget: Optional[str] = typer.Option(None, help="budget for the training run (the LLM's "
                                                                   "queries come before it)"),
              device: Optional[str] = typer.Option(None, help="auto | cpu | cuda | cuda:N | mps"),
              track: bool = typer.Option(True, help="log to MLflow"),
              force: bool = FORCE) -> None:
    """Adapt to an unlabelled corpus, GPL-style: LLM queries, mined negatives, teacher margins, MarginMSE
    (or MNRL, `--loss mnrl`)."""
    require_extra("eval", "honed adapt")
    from honed.retriever.finetune.gpl import adapt_to_corpus

    res = adapt_to_corpus(corpus, out, split=split, max_docs=max_docs, per_doc=per_doc, llm=llm,
                          filter_model=filter_model, filter_pool=filter_pool, base=base, loss=loss,
                          teacher=teacher, allow_weaker_teacher=allow_weaker_teacher, max_steps=max_steps, epochs=epochs, batch_size=batch_size, lr=lr,
                          max_seq_length=max_seq_length, time_budget=time_budget, device=device, track=track,
                          force=force)
    console.print(f"dev nDCG@10 (synthetic dev queries): base {res.base_dev_ndcg:.4f} → tuned {res.dev_ndcg:.4f}")
    if res.status != "ok":
        Console(stderr=True).print(f"[red]run marked failed:[/] {escape(res.reason)} (model kept in {res.out})",
                                   highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    console.print(f"[green]✓[/] model → {res.out}  (plot: {res.out / 'training.png'})")


@app.command("merge")
def merge_cmd(run: str = typer.Argument(..., help="the tuned run folder"),
              out: Path = typer.Option(..., help="where the merged model goes (a run folder)"),
              base: str = typer.Option("minilm", help="the base model the run was tuned from"),
              weight: Optional[float] = typer.Option(None, min=0.0, max=1.0,
                                                     help="the tuned model's share (1 = tuned, 0 = base)"),
              data: Optional[Path] = typer.Option(None, help="in-domain BEIR folder (test split), to choose the weight"),
              ood: Optional[Path] = typer.Option(None, help="out-of-domain BEIR folder (test split), to choose the weight"),
              max_ood_drop: float = typer.Option(0.0, min=0.0, help="out-of-domain nDCG@10 loss vs base allowed"),
              force: bool = FORCE) -> None:
    """Average the tuned and base weights (LM-Cocktail style): a fixed --weight, or chosen on --data and --ood."""
    require_extra("train", "honed merge")
    from honed.retriever.finetune.merge import choose_merge_weight, merge_models

    if (weight is None) == (ood is None):
        raise HonedError("give either --weight W, or --ood DIR (with --data DIR) to choose the weight")
    if ood is not None and data is None:
        raise HonedError("--ood needs --data (the in-domain BEIR folder) to show what merging costs in-domain")
    choice = None
    if ood is not None:
        choice = choose_merge_weight(run, base, data, ood, max_ood_drop=max_ood_drop)
        t = DataTable("weight", f"in-domain nDCG@10 ({data.name})", f"out-of-domain nDCG@10 ({ood.name})",
                  title="merge trade-off (test splits)")
        for r in choice["rows"]:
            t.add_row(f"{r['weight']:g}" + (" ← chosen" if r["weight"] == choice["chosen_weight"] else ""),
                      f"{r['in_domain']:.4f}", f"{r['ood']:.4f}")
        console.print(t)
        weight = choice["chosen_weight"]
    merge_models(run, base, weight, out, force=force, choice=choice)
    console.print(f"[green]✓[/] merged model (w = {weight:g}) → {out}" + (f"  (plot: {out / 'merge.png'})" if choice else ""))
