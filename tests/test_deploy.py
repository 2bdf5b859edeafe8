"""The deployment files: Kubernetes manifests valid against the Kubernetes schemas (offline, kubernetes-validate),
the compose file, and the container's lock (it satisfies pyproject.toml's honed[serve]). Whether they are
enough is checked where it can be: CI builds the image and runs it on the demo's artifact (`make ci-container`).
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"


@pytest.mark.parametrize("path", sorted((DEPLOY / "k8s").glob("*.yaml")), ids=lambda p: p.name)
def test_kubernetes_manifests_validate(path):
    import kubernetes_validate

    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, "1.37.0", strict=True)   # raises on any schema violation


def test_deployment_probes_resources_and_non_root():
    dep = yaml.safe_load((DEPLOY / "k8s" / "deployment.yaml").read_text())
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["readinessProbe"]["httpGet"]["path"] == "/ready" and c["livenessProbe"]["httpGet"]["path"] == "/health"
    assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"]
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] != 0
    hpa = yaml.safe_load((DEPLOY / "k8s" / "hpa.yaml").read_text())
    assert hpa["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"]
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    svc = compose["services"]["honed-serve"]
    assert svc["image"] == c["image"] and svc["user"] != "0" and svc["ports"][0].startswith("127.0.0.1:")
    containerfile = (DEPLOY / "Containerfile").read_text()
    assert re.search(r"^USER 10001$", containerfile, re.M) and "FROM localhost/debian-base:bookworm" in containerfile


def test_serve_lock_satisfies_pyproject():
    """The image's lock pins every package honed[serve] asks for, at a version its specifier admits.

    It is checked against the metadata, not against what this venv has: a new release of a dependency
    changes neither, so it cannot fail this test (`make lock` refreshes the lock when wanted)."""
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    lock = {}
    for line in (DEPLOY / "serve.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            lock[canonicalize_name(name)] = version
    extras = project["optional-dependencies"]

    def expand(reqs: list[str]) -> list[Requirement]:   # honed[hybrid] inside an extra: that extra's requirements
        out = []
        for req in map(Requirement, reqs):
            out += [r for e in sorted(req.extras) for r in expand(extras[e])] if req.name == "honed" else [req]
        return out

    wanted = expand(project["dependencies"] + extras["serve"])
    assert {"bm25s", "PyStemmer"} <= {r.name for r in wanted}     # the service serves every query mode
    for req in wanted:
        name = canonicalize_name(req.name)
        assert name in lock, f"deploy/serve.lock lacks {req.name} (run `make lock`)"
        assert req.specifier.contains(lock[name], prereleases=True), f"serve.lock pins {name}=={lock[name]}, not {req}"
    assert "torch" not in lock and "sentence-transformers" not in lock   # the service image stays torch-free


def test_every_package_folder_is_in_the_wheel():
    """pyproject lists honed's packages by hand (the folders map to honed.*): a new subpackage left off the list
    installs without it (the CLI, the app's pages), which only a wheel install would show."""
    import tomllib

    root = Path(__file__).resolve().parents[1]
    cfg = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    dirs = {"honed": "honed", **{f"honed.{k}": k for k in ("retriever", "rag_eval", "app")}}
    found = set()
    for pkg, folder in dirs.items():
        for init in (root / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(root / folder).parts
            found.add(".".join((pkg, *rel)))
    assert found == listed, f"missing from pyproject: {sorted(found - listed)}; listed but absent: {sorted(listed - found)}"
