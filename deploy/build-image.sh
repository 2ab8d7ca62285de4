#!/usr/bin/env bash
# Build the fedad image that every service of docker-compose.yml runs: FEDAD_IMAGE (fedad:local) from
# BASE_IMAGE (python:3.11-slim), both from the environment or else from .env.
#
#   deploy/build-image.sh                                         # then: docker compose up
#   BASE_IMAGE=local/python:bookworm deploy/build-image.sh        # any local image with CPython 3.11 + venv
#   deploy/build-wheelhouse.sh && deploy/build-image.sh           # air-gapped: dependencies from deploy/wheelhouse
#   TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 deploy/build-image.sh   # CUDA torch (GPU plants)
#
# Plain `docker build`, on purpose not `docker compose build`: compose stamps its project and service labels
# (com.docker.compose.project=fedad, ...service=server) on every image it builds, so any container started
# from such an image, e.g. an unrelated `docker run fedad:local ...`, counts as a container of the running
# plant and can make its `docker compose up` fail. Extra arguments go to `docker build` (e.g. --no-cache).
set -euo pipefail
cd "$(dirname "$0")/.."
dotenv() { sed -n "s/^$1=//p" .env 2>/dev/null | tail -1; }
image=${FEDAD_IMAGE:-$(dotenv FEDAD_IMAGE)}
base=${BASE_IMAGE:-$(dotenv BASE_IMAGE)}
image=${image:-fedad:local}
base=${base:-python:3.11-slim}
args=(--build-arg "BASE_IMAGE=$base")
[ -z "${TORCH_INDEX_URL:-}" ] || args+=(--build-arg "TORCH_INDEX_URL=$TORCH_INDEX_URL")
[ -z "${TORCH_SPEC:-}" ] || args+=(--build-arg "TORCH_SPEC=$TORCH_SPEC")
echo "fedad image: docker build -t $image from $base" >&2
# DOCKER_BUILDKIT=0: the classic builder needs no buildx plugin (BuildKit works too: DOCKER_BUILDKIT=1)
DOCKER_BUILDKIT=${DOCKER_BUILDKIT:-0} docker build -f deploy/Dockerfile -t "$image" "${args[@]}" "$@" .
labels=$(docker image inspect -f '{{range $k, $v := .Config.Labels}}{{$k}} {{end}}' "$image")
if [[ " $labels" == *" com.docker.compose."* ]]; then
    echo "fedad image: $image carries compose labels ($labels): it was not built by this script" >&2
    exit 1
fi
