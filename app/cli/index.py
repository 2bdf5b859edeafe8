"""`honed index`, `honed package`, `honed search`: build, update, verify and ship retriever artifacts, and query one."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from honed.retriever.display import DataTable, shown
from honed.retriever.errors import HonedError

from .common import FORCE, app, console

index_app = typer.Typer(help="Build and inspect FAISS indexes.", no_args_is_help=True)
app.add_typer(index_app, name="index")


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
                bm25: bool = typer.Option(False, "--bm25", help="also write a BM25 index of the same documents "
                                                                "(for `--mode bm25` and `--mode hybrid`)"),
                routing: bool = typer.Option(True, help="a run with a domain router stores the base model's vectors "
                                                        "for passages unlike its training corpus; --no-routing: the "
                                                        "tuned model's for all"),
                force: bool = FORCE) -> None:
    """Embed a corpus and write a FAISS index + doc store + manifest (and a BM25 index with --bm25)."""
    from honed.retriever.encoder import parse_workers
    from honed.retriever.index import build_index, load_index

    if ray and workers:
        raise HonedError("--workers and --ray are two ways to parallelise: pick one")
    if not ray and (ray_address or ray_gpus_per_worker):
        raise HonedError("--ray-address and --ray-gpus-per-worker need --ray")
    if ray:
        from honed.retriever.ray_build import build_index_on_ray

        build_index_on_ray(model, corpus, out, faiss_kind=faiss, split=split, batch_size=batch_size,
                           workers=ray_workers, address=ray_address, gpus_per_worker=ray_gpus_per_worker, force=force,
                           bm25=bm25, routing=routing)
    else:
        build_index(model, corpus, out, faiss_kind=faiss, split=split, batch_size=batch_size, force=force,
                    workers=parse_workers(workers), bm25=bm25, routing=routing)
    idx = load_index(out)
    m = idx.manifest
    console.print(f"[green]✓[/] {len(idx)} docs → {out} ({m['faiss']['factory']}{' + BM25' if idx.bm25 else ''}, "
                  f"dim {m['dim']}, {m['build']['docs_per_second']} docs/s)")
    idx.store.close()


@index_app.command("info")
def index_info(path: Path) -> None:
    """What an artifact holds: model, query path, documents, FAISS factory, evaluation summary."""
    from honed.retriever.artifact import artifact_info

    console.print_json(json.dumps(artifact_info(path), default=str))


@index_app.command("fuse")
def index_fuse(path: Path = typer.Argument(..., help="index folder (artifact) built with --bm25, or packaged "
                                                     "with --reranker for --rerank"),
               data: Path = typer.Option(..., help="BEIR folder whose SPLIT queries choose the fusion"),
               split: str = typer.Option("dev", help="queries the model was not trained on (dev; train only for "
                                                     "an untuned model)"),
               rerank: bool = typer.Option(False, "--rerank", help="choose the reranker's weight against the "
                                                                   "first stage instead of the hybrid fusion"),
               max_queries: Optional[int] = typer.Option(None, min=1, help="first N judged queries only"),
               index_dir: Path = typer.Option(Path("indexes"), help="cache of dev-corpus indexes"),
               dry_run: bool = typer.Option(False, "--dry-run", help="print the table; record nothing")) -> None:
    """Choose how `--mode hybrid` fuses BM25 and the embedder (RRF or a weighted sum), or with --rerank how much
    the reranker weighs against the first stage, on a dev split; record it in the artifact."""
    from honed.rag_eval.fusion import choose_fusion, choose_rerank_weight

    if rerank:
        res = choose_rerank_weight(path, data, split=split, max_queries=max_queries, index_dir=index_dir,
                                   record=not dry_run)
        t = DataTable("reranker weight", "nDCG@10")
        for r in res["rows"]:
            t.add_row(("→ " if r["weight"] == res["weight"] else "  ") + f"{r['weight']:.1f}", f"{r['ndcg@10']:.4f}")
        how = (f"reranker weight {res['weight']:.1f} (dev nDCG@10 {res['dev_ndcg@10']:.4f}, first stage alone "
               f"{res['first_stage_dev_ndcg@10']:.4f}, {res['chosen_on']})")
    else:
        res = choose_fusion(path, data, split=split, max_queries=max_queries, index_dir=index_dir,
                            record=not dry_run)
        t = DataTable("fusion", "dense weight", "nDCG@10", "Recall@100")
        for r in res["rows"]:
            chosen = r["fusion"] == res["fusion"] and r["weight"] == res["weight"]
            t.add_row(("→ " if chosen else "  ") + r["fusion"], "" if r["weight"] is None else f"{r['weight']:.1f}",
                      f"{r['ndcg@10']:.4f}", f"{r['recall@100']:.4f}")
        how = ("reciprocal rank fusion" if res["fusion"] == "rrf" else f"weighted sum, dense weight {res['weight']:.1f}")
        how += f" (dev nDCG@10 {res['dev_ndcg@10']:.4f}, {res['chosen_on']})"
    console.print(t)
    if res["queries_seen_in_training"]:
        console.print("[yellow]the model was fine-tuned on these queries: the choice favours the dense side; "
                      "choose on held-out queries[/]")
    console.print(f"{'would record' if dry_run else '[green]✓[/] recorded'} in {shown(path)}: {how}")


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
                bm25: Optional[bool] = typer.Option(None, "--bm25/--no-bm25", help="add (or leave out) a BM25 index "
                                                    "for --mode bm25|hybrid; default: as the index has it"),
                reranker: Optional[Path] = typer.Option(None, help="a reranker folder (`honed reranker train`, "
                                                                    "exported) to carry as the second stage"),
                no_reranker: bool = typer.Option(False, "--no-reranker", help="leave out the index's reranker"),
                force: bool = FORCE) -> None:
    """Write a portable retriever artifact: model (+ ONNX), FAISS, documents, and the evaluation behind it."""
    from honed.retriever.artifact import artifact_info, package_artifact

    if reranker and no_reranker:
        raise HonedError("--reranker and --no-reranker contradict each other: give one")
    package_artifact(index, out, model=model, report=report, system=system, dataset=dataset, force=force, bm25=bm25,
                     reranker=False if no_reranker else reranker)
    info = artifact_info(out)
    ev = info.get("eval") or {}
    summary = (f"; {ev['system']} nDCG@10 {ev['metrics'].get('NDCG@10', float('nan')):.4f} on {ev['dataset']}"
               if ev else "")
    console.print(f"[green]✓[/] {shown(out)}: {info['documents']} documents, query path {info['query_path']}, "
                  f"modes {'/'.join(info['modes'])}{' + rerank' if info['rerank'] else ''}, "
                  f"{info['bytes'] / 1e6:.0f} MB{summary}")


@app.command("search")
def search_cmd(index: Path, query: str, k: int = typer.Option(10, "-k", min=1, help="hits to show"),
               model: Optional[str] = typer.Option(None, help="override the manifest's model"),
               mode: str = typer.Option("dense", help="dense | bm25 | hybrid (the last two need `index build "
                                                      "--bm25`)"),
               rerank: int = typer.Option(0, min=0, help="rerank this many first-stage candidates with the "
                                                         "artifact's reranker (0: no reranking)")) -> None:
    """Print the top-k passages of an index for a query (ONNX path when the model has one: no torch)."""
    from honed.retriever.fusion import check_mode, search_modes
    from honed.retriever.index import check_compatible, load_index
    from honed.retriever.reranker import artifact_reranker
    from honed.retriever.reranker import rerank as rerank_hits

    if not query.strip():
        raise HonedError("QUERY is empty: give the text to search for")

    idx = load_index(index)
    check_mode(idx, mode)   # before loading the model: a refusal costs nothing
    reranker = artifact_reranker(idx) if rerank else None
    vecs = enc = None
    if mode != "bm25":
        from honed.retriever.encoder import load_encoder

        enc = load_encoder(model or idx.model_dir)
        check_compatible(idx, enc)
        vecs = enc.encode_queries([query])
    t = DataTable("#", "score", "doc id", "text")
    hits = search_modes(idx, vecs, [query], max(k, rerank), mode)
    hits = (rerank_hits(idx, reranker, [query], hits, k) if reranker else hits)[0]
    for i, ((pos, score), doc) in enumerate(zip(hits, idx.docs_at([p for p, _ in hits])), 1):
        t.add_row(str(i), f"{score:.3f}", doc["id"], doc["text"][:160] + ("…" if len(doc["text"]) > 160 else ""))
    console.print(t)
    second = ""
    if reranker:
        weight = f", weight {idx.rerank['weight']:.1f}" if idx.rerank else ""
        second = f", reranked top {rerank} ({shown(reranker.backend)}{weight})"
    console.print(f"[dim]{mode}" + (f", model backend: {shown(enc.backend)}" if enc else "") + second + "[/]")
