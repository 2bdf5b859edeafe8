"""`honed reranker train`: a domain cross-encoder, the optional second stage of an artifact."""
from __future__ import annotations

import inspect
from typing import Optional
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from honed.retriever.display import shown
from honed.retriever.extras import require_extra
from honed.retriever.finetune.reranker import train_reranker

from .common import FORCE, app, console

RR = {k: p.default for k, p in inspect.signature(train_reranker).parameters.items()}   # one home for the recipe

reranker_app = typer.Typer(help="Train a domain reranker (cross-encoder) for two-stage retrieval.",
                           no_args_is_help=True)
app.add_typer(reranker_app, name="reranker")


@reranker_app.command("train")
def train_cmd(data: str = typer.Argument(..., help="BEIR folder; its train split gives pairs"),
              out: Path = typer.Option(..., help="reranker folder to write (a sentence-transformers CrossEncoder)"),
              base: str = typer.Option(RR["base"], help="model the cross-encoder starts from: minilm | mpnet | folder"),
              first_stage: str = typer.Option(RR["first_stage"], help="the bi-encoder it will rerank (mines its negatives "
                                                             "and dev candidates): your tuned run"),
              epochs: float = typer.Option(RR["epochs"], min=0.0),
              max_steps: int = typer.Option(RR["max_steps"], help="stop after N steps (overrides epochs)"),
              batch_size: int = typer.Option(RR["batch_size"], min=1),
              lr: float = typer.Option(RR["lr"]),
              max_length: int = typer.Option(RR["max_length"], min=16, help="tokens per (query, passage) pair"),
              layers: Optional[int] = typer.Option(RR["layers"], min=1, help="keep only the base's first N transformer "
                                                   "layers: a shallower reranker, N/L of the layers' compute"),
              num_negatives: int = typer.Option(RR["num_negatives"], min=1, help="mined hard negatives per pair"),
              loss: str = typer.Option(RR["loss"], help="mnrl (each query ranks its positive among its negatives and "
                                       "other queries' passages) | bce (each pair labelled alone)"),
              batching: str = typer.Option(RR["batching"], help="labels: no passage labelled relevant to a query "
                                           "among its in-batch negatives | texts: only identical texts kept apart"),
              seed: int = typer.Option(RR["seed"]),
              precision: str = typer.Option(RR["precision"], help="auto | fp32 | bf16 | fp16: training autocast"),
              drop_eval_overlap: bool = typer.Option(RR["drop_eval_overlap"], help="drop training queries equal to "
                                                     "eval queries instead of refusing"),
              force: bool = FORCE) -> None:
    """Train a cross-encoder on the domain's pairs and the first stage's hard negatives; report dev reranking."""
    require_extra("train", "honed reranker train")
    card = train_reranker(data, out, base=base, first_stage=first_stage, epochs=epochs, max_steps=max_steps,
                          batch_size=batch_size, lr=lr, max_length=max_length, layers=layers,
                          num_negatives=num_negatives, loss=loss, batching=batching, seed=seed, precision=precision, drop_eval_overlap=drop_eval_overlap, force=force)
    dev = card["dev"]
    console.print(f"dev nDCG@10 of the first stage's top 30: in its order {dev['first_stage_ndcg@10']:.4f} → reranked "
                  f"{dev['rerank_ndcg@10']:.4f} → mixed at reranker weight {dev['mix']['weight']:.1f} "
                  f"{dev['mix']['ndcg@10']:.4f}  ({card['triples']} triples, {card['triples_dropped_for_dev']} left out "
                  f"for dev; {card['seconds']:.0f} s)")
    if card["status"] != "ok":   # not bad input: the candidate lost, like a failed gate (exit 1)
        Console(stderr=True).print(f"[red]reranker marked failed:[/] {escape(card['reason'])} (kept in {shown(out)} "
                                   "for inspection)", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    console.print(f"[green]✓[/] reranker → {shown(out)}; next: `honed export onnx {shown(out)} --data {data}`, then "
                  f"`honed package --index ART --out NEW --reranker {shown(out)}`")
