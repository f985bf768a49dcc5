#!/usr/bin/env bash
# Usage: scripts/require.sh BINARY:DEBIAN_PACKAGE ...
# Installs the Debian packages whose binaries are missing. As root it runs apt-get;
# otherwise it prints the one line to run and fails, so set-up never half-works.
set -euo pipefail
missing=()
for spec in "$@"; do
  bin=${spec%%:*}; pkg=${spec#*:}
  if ! command -v "$bin" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$bin" ] && [ ! -x "/usr/bin/$bin" ]; then
    missing+=("$pkg")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing system packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "missing system packages; run: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
