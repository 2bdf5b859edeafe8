"""What every command group shares: the root Typer app, the console, and the options several commands take."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import typer
from rich.console import Console

from honed.retriever.errors import HonedError

app = typer.Typer(help="Fine-tune, index, evaluate and compare domain retrievers.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
console = Console()
FEEDBACK_DB = typer.Option(None, "--db", help="SQLAlchemy URL or SQLite file (default $HONED_FEEDBACK_URL or ./feedback.db)")
FORCE = typer.Option(False, "--force", help="replace --out even if it is not a honed artifact of this kind")
FORCE_FILE = typer.Option(False, "--force", help="replace --out if it exists")


def check_new_file(out: Path, force: bool) -> None:
    """Refuse to replace a file the user did not ask to replace (checked before the work, not after)."""
    if out.is_dir():
        raise HonedError(f"--out {out}: is a folder; give the file to write")
    if out.exists() and not force:
        raise HonedError(f"--out {out}: exists; choose a new file or pass --force to replace it")


def start_streamlit(cfg: dict, address: str, port: int, what: str) -> None:
    """Start the Streamlit app (app/ui.py) with `cfg` in HONED_APP_CONFIG; returns when the server stops."""
    from honed.app.launch import run_server

    env = {**os.environ, "HONED_APP_CONFIG": json.dumps(cfg)}
    ui = Path(__file__).parent.parent / "ui.py"
    console.print(f"{what}: http://{address}:{port}  (store: {cfg['feedback']}; Ctrl-C stops it)")
    cmd = [sys.executable, "-m", "streamlit", "run", str(ui), "--server.headless", "true",
           "--server.address", address, "--server.port", str(port), "--browser.gatherUsageStats", "false",
           "--client.toolbarMode", "minimal"]
    raise typer.Exit(run_server(cmd, env))


REPORTS = typer.Option([Path("reports")], "--reports", help="report folders the dashboard lists (repeatable)")
RUNS_DIR = typer.Option(Path("runs"), "--runs-dir", help="MLflow store and run folders (runs/mlflow.db)")
PORT = typer.Option(8501, "--port", min=1, max=65535)
ADDRESS = typer.Option("127.0.0.1", "--address", help="bind address (localhost by default)")
