#!/usr/bin/env bash
# What `make test` needs beyond Python 3.11, Java 17 and make, checked before anything runs:
# - the training data (the tests train tiny models on it), at $DATA_DIR, else ../shared/data, else var/data (where
#   `modelops data fetch` lays out the public originals);
# - Debian's system tools the tests drive: chromium (browser tests; a browser download is impossible here),
#   docker-compose, systemd-analyze and caddy (deployment files validated without an engine or an init),
#   node/npm (newman runs the Postman collection), podman with runc, the CNI dnsname plugin (containers find
#   each other by service name) and debootstrap (the container images are built and the compose stack run:
#   `make image-test`).
# Missing tools are installed with apt-get when this runs as root or with passwordless sudo; otherwise it stops
# at once with the one command to run, instead of failing deep inside pytest.
set -euo pipefail

data_dir="${DATA_DIR:-../shared/data}"
[ -n "${DATA_DIR:-}" ] || [ -d "$data_dir" ] || data_dir=var/data
if [ ! -f "$data_dir/imdb/reviews.csv" ]; then
  echo "training data not found at $data_dir: set DATA_DIR, or download the public originals with" >&2
  echo "  .venv/bin/python -m modelops data fetch" >&2
  exit 1
fi

need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
command -v caddy >/dev/null 2>&1 || need+=(caddy)
command -v npm >/dev/null 2>&1 || need+=(nodejs npm)
command -v podman >/dev/null 2>&1 || need+=(podman)
command -v runc >/dev/null 2>&1 || need+=(runc)
[ -x "${CNI_PLUGIN_DIR:-/usr/lib/cni}/dnsname" ] || need+=(golang-github-containernetworking-plugin-dnsname)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  sudo=(sudo -n)
else
  echo "make test needs Debian's ${need[*]}; install them, then run make test again:" >&2
  echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${need[*]}" >&2
  exit 1
fi
echo "== installing Debian's ${need[*]} (used by the tests)"
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
