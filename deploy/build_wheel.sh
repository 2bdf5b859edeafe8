#!/usr/bin/env bash
# Build honed's wheel into OUTDIR without writing into the checkout:  deploy/build_wheel.sh OUTDIR
# `pip wheel .` runs setuptools in the source tree, which leaves build/lib and honed.egg-info there and never
# prunes build/lib (build_py copies files, it does not remove them): a module deleted from the source would still
# ship in the next wheel built from that checkout. DIST_EXTRA_CONFIG, an extra setup.cfg that setuptools reads,
# moves both into a temporary folder. $PY picks the interpreter (default python3).
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
out=$(realpath -m "$1")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf '[build]\nbuild_base = %s/build\n[egg_info]\negg_base = %s\n' "$tmp" "$tmp" > "$tmp/setup.cfg"
cd "$(dirname "$0")/.."
DIST_EXTRA_CONFIG="$tmp/setup.cfg" "${PY:-python3}" -m pip wheel --quiet --no-deps -w "$out" .
