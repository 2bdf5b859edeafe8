"""`honed export onnx|triton`: a model for serving."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from honed.retriever.display import DataTable
from honed.retriever.errors import HonedError
from honed.retriever.extras import require_extra

from .common import FORCE, app, console

export_app = typer.Typer(help="Export a model for serving (ONNX, Triton).", no_args_is_help=True)
app.add_typer(export_app, name="export")


@export_app.command("onnx")
def export_onnx_cmd(model: str = typer.Argument(..., help="model folder (a run), or an index artifact (its model)"),
                    quantize: Optional[str] = typer.Option("int8", help="int8 | none"),
                    data: Optional[str] = typer.Option(None, help="BEIR folder for the nDCG@10 parity gate"),
                    max_ndcg_drop: Optional[float] = typer.Option(None, help="int8 tolerance in nDCG@10 (default "
                                                                  "0.005; a reranker's gate: 0.01, on 40 queries)"),
                    max_docs: int = typer.Option(2000, min=1, help="parity corpus size"),
                    target_cpu: str = typer.Option("all", help="int8 recipes: all | auto (this CPU) | avx2 | avx512-vnni")) -> None:
    """Export to <model>/onnx/ (fp32 + int8 per CPU target) and check parity against the torch model.

    A reranker folder (`honed reranker train`) is exported as a cross-encoder: parity on its scores and
    on its reranking nDCG@10 of each test query's BM25 top 20 (with --data)."""
    require_extra("train", "honed export onnx")
    from honed.retriever.export.onnx import export_onnx, int8_targets
    from honed.retriever.reranker import is_reranker

    if quantize not in ("int8", "none", None):
        raise HonedError(f"--quantize must be int8 or none, got {quantize!r}")
    int8_targets(target_cpu)   # a bad --target-cpu fails before the model loads
    if is_reranker(model):
        from honed.retriever.export.reranker_onnx import export_reranker_onnx

        man = export_reranker_onnx(model, quantize=quantize == "int8", data=data, target_cpu=target_cpu,
                                   max_ndcg_drop=0.01 if max_ndcg_drop is None else max_ndcg_drop)
        _print_parity(model, man, {"max |Δscore|": "max_abs_diff", "spearman": "spearman",
                                   "rerank nDCG@10": "ndcg@10"}, "reranker")
        return
    man = export_onnx(model, quantize=quantize == "int8", data=data,
                      max_ndcg_drop=0.005 if max_ndcg_drop is None else max_ndcg_drop,
                      max_docs=max_docs, target_cpu=target_cpu)
    _print_parity(model, man, {"cos mean": "cos_mean", "cos min": "cos_min", "nDCG@10": "ndcg@10"}, "embedder")


def _print_parity(model: str, man: dict, columns: dict[str, str], what: str) -> None:
    """The parity table of an export (one row per variant, `columns`: header → key) and the path this CPU takes."""
    from honed.retriever.ort_encoder import cpu_int8_target

    t = DataTable("variant", *columns, "gate")
    for name, p in man["parity"].items():
        gate = man["int8"].get(name.removeprefix("int8-"), {}) if name.startswith("int8-") else {}
        t.add_row(name, *(str(p.get(key, "—")) for key in columns.values()),
                  ("pass" if gate.get("passed") else gate.get("reason", "FAIL")) if gate else "")
    console.print(t)
    usable = man["int8"].get(cpu_int8_target(), {}).get("passed") or man["int8"].get("avx2", {}).get("passed")
    console.print(f"[green]✓[/] {model}/onnx/ ({what}; this CPU: {cpu_int8_target()}; default path: "
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
