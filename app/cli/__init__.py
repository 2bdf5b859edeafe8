"""The ``honed`` command line: a thin shell over functions you can call from Python.

Each command parses flags, calls one library function, and prints its result.
A :class:`~retriever.errors.HonedError` becomes a one-line ``error:`` message
and exit code 2; nothing here holds logic a Python user would miss. One module
per command group (:mod:`.index`, :mod:`.train`, :mod:`.evaluate`, …); every
table goes through :mod:`honed.retriever.display`, so user text is never markup.
"""
from __future__ import annotations

import os
import sys
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape

from honed.retriever.errors import HonedError

# Importing a command module registers its commands and groups on `app`.
from . import models, data, index, train, reranker, evaluate, diagnose, export, feedback, apps, annotate, serve  # noqa: E402,F401,E501
from .common import app


@app.callback()
def _root(device: Optional[str] = typer.Option(None, "--device", help="torch device for every model this command "
                                               "loads: auto (cuda > mps > cpu), cpu, cuda, cuda:N, mps "
                                               "(sets $HONED_DEVICE; the ONNX path is always CPU)")) -> None:
    """Fine-tune, index, evaluate and compare domain retrievers."""
    if device:
        from honed.retriever.device import resolve_device

        os.environ["HONED_DEVICE"] = resolve_device(device)


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
