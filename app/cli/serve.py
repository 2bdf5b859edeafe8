"""`honed serve`, `honed serve-triton`: the HTTP endpoint and the Triton server."""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

import typer

from honed.retriever.errors import HonedError
from honed.retriever.extras import require_extra

from .common import FEEDBACK_DB, app, console

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
              api_key_env: str = typer.Option("HONED_API_KEY", help="env variable holding the API key (unset: open)"),
              mode: str = typer.Option("dense", help="dense | bm25 | hybrid (BM25 fused with the embedder; needs "
                                                     "artifacts built with `index build --bm25`)"),
              rerank: int = typer.Option(0, min=0, help="rerank this many first-stage candidates with each "
                                                        "artifact's reranker (0: off; `package --reranker`)"),
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
                      api_key_env=api_key_env, mode=mode, rerank=rerank)
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
