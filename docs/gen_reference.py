"""Write docs/reference.md: every `honed` command with its arguments and options, read from the Typer app itself.

Generated, never hand-copied, so a flag and its default can only be documented as the code has them.
`make docs` runs it before `mkdocs build --strict`.

    python docs/gen_reference.py > docs/reference.md
"""
from __future__ import annotations

import typer.main

from honed.app.cli import app


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _params(cmd) -> list[str]:
    rows = []
    for p in cmd.params:
        if p.hidden if hasattr(p, "hidden") else False:
            continue
        if p.param_type_name == "argument":
            name, default = f"`{p.name.upper()}`", "required" if p.required else ""
        else:
            name = " / ".join(f"`{o}`" for o in p.opts + p.secondary_opts)
            default = "required" if p.required else ("" if p.default in (None, (), []) or p.is_flag and not p.default
                                                     else f"`{p.default}`")
        rows.append(f"| {name} | {_cell(getattr(p, 'help', '') or '')} | {default} |")
    return rows


def _walk(cmd, path: list[str], out: list[str]) -> None:
    # duck-typed: Typer vendors its own click, whose classes are not the installed click's
    if hasattr(cmd, "commands"):
        if cmd.callback is not None and cmd.params and path:      # a group that is itself a command
            _emit(cmd, path, out)
        for name in sorted(cmd.commands):
            _walk(cmd.commands[name], path + [name], out)
    else:
        _emit(cmd, path, out)


def _emit(cmd, path: list[str], out: list[str]) -> None:
    out += [f"## `{' '.join(['honed', *path])}`", "", _cell((cmd.help or "").strip().split("\n\n")[0]), ""]
    rows = _params(cmd)
    if rows:
        out += ["| argument / option | what | default |", "|---|---|---|", *rows, ""]


def main() -> None:
    root = typer.main.get_command(app)
    out = ["# Command reference", "", "Generated from the Typer app by `docs/gen_reference.py` (`make docs`): "
           "every command, argument and option with its default, as the code has them. The guide to the "
           "commands is [Command line](cli.md).", ""]
    _emit(root, [], out)
    _walk(root, [], out)
    print("\n".join(out))


if __name__ == "__main__":
    main()
