"""The report files honed writes (`honed eval beir|rag`), read back and checked: one reader for everyone.

The release gate, the results dashboard and `honed package --report` (which copies a report's numbers
into an artifact) all read reports; this is their one home, low enough in the layers (``retriever``)
that an artifact can use it without importing the evaluation package.

Example:
    >>> import json
    >>> from honed.retriever.report_schema import check_report, read_file
    >>> doc = check_report(read_file(path, "report", json.loads), str(path))   # doctest: +SKIP
"""
from __future__ import annotations

import json
import tomllib
from pathlib import Path

from .errors import HonedError


def read_file(p: Path, what: str, parse):
    """Read and parse a file; a missing or malformed file is one HonedError line naming it."""
    try:
        return parse(p.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise HonedError(f"{p}: {what} not found") from None
    except IsADirectoryError:
        raise HonedError(f"{p}: is a folder; give the {what} file") from None
    except UnicodeDecodeError as e:
        raise HonedError(f"{p}: not UTF-8 text (bad byte at offset {e.start})") from None
    except OSError as e:
        raise HonedError(f"{p}: cannot read {what} ({e.strerror})") from None
    except tomllib.TOMLDecodeError as e:
        raise HonedError(f"{p}: invalid TOML ({e})") from None
    except json.JSONDecodeError as e:
        raise HonedError(f"{p}:{e.lineno}: invalid JSON ({e.msg})") from None
    except RecursionError:
        raise HonedError(f"{p}: nested too deeply to be a {what}") from None


def read_report(path, kind: str | None = None) -> tuple[dict, bool]:
    """A report file, checked against its folder's record (an edited report is refused) and its schema.

    `kind` ("beir" or "rag") refuses the other kind with one line. Returns the report and whether a
    record vouched for it (a report copied out of its folder has none: read, but not verified).
    """
    from .atomic import read_artifact, verify_artifact

    p = Path(path)
    record = read_artifact(p.parent) if p.is_file() else None
    verified = bool(record and p.name in record["files"])
    if verified:
        verify_artifact(p.parent, [p.name])     # a report edited after it was written is not trusted
    report = check_report(read_file(p, "report", json.loads), str(p))
    is_rag = str(report.get("schema", "")).startswith("honed.rag-report/")
    if kind == "beir" and is_rag:
        raise HonedError(f"{p}: is a RAG report (`honed eval rag`); this needs a `honed eval beir` report")
    if kind == "rag" and not is_rag:
        raise HonedError(f"{p}: is a BEIR report (`honed eval beir`); this needs a `honed eval rag` report")
    return report, verified


def check_report(report, where: str) -> dict:
    """The parts of a BEIR report the gate reads, checked; anything else is one HonedError line."""
    if not isinstance(report, dict):
        raise HonedError(f"{where}: not a honed report (a JSON {type(report).__name__}, expected an object)")
    schema = str(report.get("schema", ""))
    if schema.startswith("honed.rag-report/"):
        return check_rag_report(report, where)
    if not schema.startswith("honed.report/"):
        raise HonedError(f"{where}: not a honed report (schema {report.get('schema')!r})")
    datasets = report.get("datasets")
    if not isinstance(datasets, dict) or not datasets:
        raise HonedError(f"{where}: report has no datasets")
    for name, d in datasets.items():
        systems = d.get("systems") if isinstance(d, dict) else None
        if not isinstance(systems, dict):
            raise HonedError(f"{where}: datasets.{name} has no systems table")
        for sysname, sd in systems.items():
            if not isinstance(sd, dict) or not isinstance(sd.get("metrics"), dict):
                raise HonedError(f"{where}: datasets.{name}.systems.{sysname} has no metrics table")
            per_q = sd.get("per_query", {})
            if not isinstance(per_q, dict) or not all(isinstance(v, dict) for v in per_q.values()):
                raise HonedError(f"{where}: datasets.{name}.systems.{sysname}.per_query must map query ids "
                                 "to metric tables")
    return report


def check_rag_report(report: dict, where: str) -> dict:
    systems = report.get("systems")
    if not isinstance(systems, dict) or not systems:
        raise HonedError(f"{where}: RAG report has no systems")
    for name, sd in systems.items():
        if not isinstance(sd, dict) or not isinstance(sd.get("metrics"), dict) \
                or not isinstance(sd.get("samples"), list):
            raise HonedError(f"{where}: systems.{name} has no metrics and samples")
    return report
