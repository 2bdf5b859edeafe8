"""The deployment files: Kubernetes manifests valid against the Kubernetes schemas (offline, kubernetes-validate),
the compose file, and the container's serving requirements (pinned to what this suite runs). Whether they are
enough is checked where it can be: CI builds the image and runs it on the demo's artifact (`make ci-container`).
"""
from __future__ import annotations

import importlib.metadata
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


def test_serving_requirements_are_pinned_to_what_the_suite_runs():
    pins = dict(line.split("==") for line in (DEPLOY / "requirements-serve.txt").read_text().splitlines()
                if line and not line.startswith("#"))
    for name, version in pins.items():
        assert importlib.metadata.version(name) == version, f"deploy/requirements-serve.txt pins {name}=={version}"
