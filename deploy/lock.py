"""Write deploy/serve.lock: the exact versions `pip install 'honed[serve]'` resolves to, for the service image.

pip's own resolver answers (``pip install --dry-run --report``), so the lock is what pip would install from
pyproject.toml's metadata on this Python and platform; nothing is installed. Refreshed by `make lock`;
the image installs honed[serve] from its wheel with this file as constraints.

    .venv/bin/python deploy/lock.py > deploy/serve.lock
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def resolve(extra: str = "serve") -> dict[str, str]:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                        "--report", str(report), f"{REPO}[{extra}]"], check=True)
        items = json.loads(report.read_text())["install"]
    return {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in items
            if i["metadata"]["name"].lower() != "honed"}


if __name__ == "__main__":
    pins = resolve()
    print(f"# honed[serve] resolved by pip for Python {sys.version_info[0]}.{sys.version_info[1]} "
          f"({sys.platform}); `make lock` rewrites this file. The service image installs with it as constraints.")
    for name in sorted(pins):
        print(f"{name}=={pins[name]}")
