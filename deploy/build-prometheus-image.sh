#!/usr/bin/env bash
# Build a Prometheus server image offline from Debian's `prometheus` package (no registry access), the
# way the local Python base image is built: mmdebstrap a minimal bookworm root with the package, then
# `docker import` it.   deploy/build-prometheus-image.sh [TAG]   (default fedad-prometheus:local)
set -euo pipefail
tag=${1:-fedad-prometheus:local}
mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
[ -n "$mirror" ] || mirror=$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list)
mmdebstrap --quiet --variant=apt --include=prometheus,ca-certificates \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' bookworm - "$mirror" \
  | docker import -c 'ENTRYPOINT ["/usr/bin/prometheus"]' \
      -c 'CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]' \
      -c 'EXPOSE 9090' - "$tag" >/dev/null
echo "built $tag"
