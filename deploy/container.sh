#!/usr/bin/env bash
# Build the service image and check it, with podman and no container registry.
#
#   deploy/container.sh build                 # base image (debootstrap, once) + localhost/honed-serve
#   deploy/container.sh check ARTIFACT        # run it on ARTIFACT: /ready, then one /search equal to in-process
#
# Host quirks (see ../shared/ENVIRONMENT.md): crun refuses the hybrid cgroup layout, so runc; podman's
# default nofile limit exceeds the host's hard limit, so explicit ulimits. Both go in a containers.conf
# passed through CONTAINERS_CONF. pip inside the build gets the host's CA bundle ($PIP_CERT) mounted
# read-only for the build only; it is never baked into the image.
# Timings and the image size are printed and written to $HONED_CONTAINER_REPORT (default
# reports/container.json).
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${HONED_IMAGE:-localhost/honed-serve:latest}
BASE=localhost/debian-base:bookworm
PY=${PYTHON:-.venv/bin/python}
REPORT=${HONED_CONTAINER_REPORT:-reports/container.json}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

need_tools() {
    if ! command -v podman >/dev/null || ! command -v runc >/dev/null || ! command -v debootstrap >/dev/null; then
        local sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
        $sudo apt-get update -qq && $sudo apt-get install -y -qq podman runc debootstrap >/dev/null
    fi
    local nofile; nofile=$(ulimit -Hn); [ "$nofile" = unlimited ] && nofile=1048576
    [ "$nofile" -gt 65536 ] && nofile=65536
    cat > "$WORK/containers.conf" <<EOF
[engine]
runtime = "runc"
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=32768:32768"]
EOF
    export CONTAINERS_CONF="$WORK/containers.conf"
}

mirror() {   # the Debian mirror apt already uses
    sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1 | grep . ||
        awk '/^deb /{print $2; exit}' /etc/apt/sources.list 2>/dev/null | grep . || echo http://deb.debian.org/debian
}

json_set() {   # json_set KEY VALUE: merge one number or string into the report
    mkdir -p "$(dirname "$REPORT")"
    "$PY" - "$REPORT" "$1" "$2" <<'EOF'
import json, sys
path, key, value = sys.argv[1:]
try:
    doc = json.load(open(path))
except (OSError, ValueError):
    doc = {}
try:
    doc[key] = json.loads(value)
except ValueError:
    doc[key] = value
json.dump(doc, open(path, "w"), indent=2)
EOF
}

build() {
    need_tools
    if ! podman image exists "$BASE"; then
        local t0=$SECONDS
        debootstrap --variant=minbase bookworm "$WORK/rootfs" "$(mirror)" >"$WORK/debootstrap.log" 2>&1 ||
            { tail -20 "$WORK/debootstrap.log"; exit 1; }
        tar -C "$WORK/rootfs" -c . | podman import - "$BASE" >/dev/null
        echo "base image $BASE: $((SECONDS - t0)) s"
        json_set base_image_seconds $((SECONDS - t0))
    fi
    local cert=() t0=$SECONDS
    if [ -n "${PIP_CERT:-}" ] && [ -f "$PIP_CERT" ]; then
        cert=(-v "$PIP_CERT:/tmp/host-ca.crt:ro" --build-arg PIP_CERT=/tmp/host-ca.crt)
    fi
    rm -rf build/container && mkdir -p build/container
    PY="$PY" deploy/build_wheel.sh build/container >/dev/null
    cp deploy/serve.lock build/container/
    local previous; previous=$(podman image inspect "$IMAGE" --format '{{.Id}}' 2>/dev/null || true)
    podman build --quiet -f deploy/Containerfile -t "$IMAGE" "${cert[@]}" . >/dev/null
    # the image this tag named before is left untagged (734 MB each build): remove it unless something
    # else still names or runs it (podman refuses then, and it stays)
    if [ -n "$previous" ] && [ "$previous" != "$(podman image inspect "$IMAGE" --format '{{.Id}}')" ] &&
       [ "$(podman image inspect "$previous" --format '{{len .RepoTags}}' 2>/dev/null)" = 0 ]; then
        podman rmi "$previous" >/dev/null 2>&1 && echo "removed the previous untagged build ${previous:0:12}" || true
    fi
    local size; size=$(podman image inspect "$IMAGE" --format '{{.Size}}')
    echo "image $IMAGE: built in $((SECONDS - t0)) s, $((size / 1000000)) MB"
    json_set build_seconds $((SECONDS - t0))
    json_set image_mb $((size / 1000000))
    json_set image_user "$(podman image inspect "$IMAGE" --format '{{.Config.User}}')"
    [ "$size" -lt 1500000000 ] || { echo "image is $((size / 1000000)) MB, over the 1.5 GB budget"; exit 1; }
}

check() {
    local artifact=${1:?usage: deploy/container.sh check ARTIFACT}
    [ -f "$artifact/manifest.json" ] || { echo "error: $artifact is not a retriever artifact"; exit 2; }
    need_tools
    local port; port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    NAME="honed-check-$$"   # global: the EXIT trap needs it after this function returns
    local t0; t0=$("$PY" -c 'import time; print(time.time())')
    podman run -d --rm --name "$NAME" -p "127.0.0.1:$port:8080" \
        -v "$(cd "$artifact" && pwd):/srv/artifact:ro" "$IMAGE" >/dev/null
    trap 'podman rm -f "$NAME" >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT
    "$PY" - "$artifact" "http://127.0.0.1:$port" "$t0" "$REPORT" "$NAME" <<'EOF'
import json, subprocess, sys, time

import httpx

artifact, url, t0, report, name = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4], sys.argv[5]
while True:
    try:
        r = httpx.get(url + "/ready", timeout=2)
        if r.status_code == 200:
            break
        if "loading failed" in r.text:   # the service is up but could not open the artifact: say why, now
            sys.exit(f"container up, artifact not loaded: {r.json()['error']}")
    except httpx.HTTPError:
        pass
    if time.time() - t0 > 120:
        logs = subprocess.run(["podman", "logs", name], capture_output=True, text=True)
        sys.exit(f"container not ready after 120 s:\n{logs.stdout[-2000:]}{logs.stderr[-2000:]}")
    time.sleep(0.1)
ready_s = time.time() - t0
user = subprocess.run(["podman", "exec", name, "id", "-u"], capture_output=True, text=True).stdout.strip()
query = "Is there a cap on liability?"
hits = httpx.post(url + "/search", json={"query": query, "k": 10}, timeout=30).json()["hits"]

from honed.retriever.index import open_index_and_encoder, search
idx, enc = open_index_and_encoder(artifact)
want = search(idx, enc.encode_queries([query]), 10)[0]
want_ids = [d["id"] for d in idx.docs_at([label for label, _ in want])]
got_ids = [h["id"] for h in hits]
ok = got_ids == want_ids and all(abs(h["score"] - s) < 1e-4 for h, (_, s) in zip(hits, want))
print(f"container ready in {ready_s:.2f} s as uid {user}; /search {'matches' if ok else 'DIFFERS FROM'} in-process "
      f"({enc.backend}): {got_ids[:3]} …")
try:
    doc = json.load(open(report))
except (OSError, ValueError):
    doc = {}
doc.update(start_to_ready_s=round(ready_s, 2), uid=user, search_matches_in_process=ok)
json.dump(doc, open(report, "w"), indent=2)
sys.exit(0 if ok and user not in ("", "0") else 1)
EOF
}

case "${1:-}" in
    build) build ;;
    check) shift; check "$@" ;;
    *) echo "usage: deploy/container.sh build | check ARTIFACT" >&2; exit 2 ;;
esac
