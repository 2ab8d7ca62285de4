#!/usr/bin/env bash
# Build deploy/wheelhouse: every wheel the fedad image needs, so `deploy/build-image.sh` works with no
# registry at all (air-gapped plants, CI). Run it on any machine with the internet (or a mirror) and the
# same CPU architecture and Python minor version as the image (CPython 3.11, x86_64 or aarch64 Linux),
# then carry the repository with deploy/wheelhouse/ to the plant.
#
#   deploy/build-wheelhouse.sh                      # CPU torch (small image)
#   TORCH_SPEC="torch==2.13.0" PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cu128 \
#       deploy/build-wheelhouse.sh                  # a CUDA torch build for plants with GPUs
#   deploy/build-wheelhouse.sh --platform manylinux2014_aarch64 --only-binary=:all:   # another arch
#
# Extra arguments go to `pip download`. The image build then installs with
# `pip install --no-index --find-links deploy/wheelhouse` and never contacts a registry.
set -euo pipefail
set -f # requirement specifiers like flwr==1.41.* are not globs
cd "$(dirname "$0")/.."
out=deploy/wheelhouse
torch_spec=${TORCH_SPEC:-torch==2.13.0}
py=${PYTHON:-python3}
mkdir -p "$out"
reqs=$("$py" - <<'PY'
import tomllib
with open("pyproject.toml", "rb") as f:
    data = tomllib.load(f)
print("\n".join(data["project"]["dependencies"] + data["build-system"]["requires"]))
PY
)
# Up to date when the same requirements were downloaded completely before (delete the stamp to refresh).
stamp="$out/.complete"
want=$(printf '%s\n' "$torch_spec" $reqs pip "$@")
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -z "${FEDAD_WHEELHOUSE_REFRESH:-}" ]; then
    echo "wheelhouse: up to date ($(find "$out" -maxdepth 1 -name '*.whl' | wc -l) wheels in $out;" \
        "FEDAD_WHEELHOUSE_REFRESH=1 re-resolves)" >&2
    exit 0
fi
rm -f "$stamp"
# shellcheck disable=SC2086
"$py" -m pip download --quiet --dest "$out" --prefer-binary "$torch_spec" $reqs "pip" "$@" \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
echo "$want" >"$stamp"
n=$(find "$out" -maxdepth 1 -name '*.whl' | wc -l)
echo "wheelhouse: $n wheels, $(du -sh "$out" | cut -f1) in $out" >&2
