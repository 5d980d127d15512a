#!/usr/bin/env bash
# Installs the system packages that the build (protoc) and the e2e tests (PostgreSQL 15, pgBackRest,
# openssl) need, as root, with apt-get. Does nothing when they are all there already.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

missing=()
[[ -x /usr/lib/postgresql/15/bin/initdb && -x /usr/lib/postgresql/15/bin/pg_ctl ]] || missing+=(postgresql-15)
command -v pgbackrest >/dev/null 2>&1 || missing+=(pgbackrest)
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)

if ((${#missing[@]} == 0)); then
  exit 0
fi

if ((EUID != 0)); then
  echo "install-deps: need root to install: ${missing[*]}" >&2
  exit 1
fi

# The tests start their own clusters on free ports: keep postgresql-common from creating (and, where
# services may start, running) a "main" cluster on 5432. Only when the package is not configured yet, so
# an existing setup is left alone; --force-confold keeps this file when the package brings its own.
if [[ ! -e /etc/postgresql-common/createcluster.conf ]]; then
  mkdir -p /etc/postgresql-common
  echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.conf
fi

log="$(mktemp)"
trap 'rm -f "$log"' EXIT

echo "install-deps: installing ${missing[*]}"
if ! apt-get update -qq >"$log" 2>&1 ||
  ! apt-get install -y -qq --no-install-recommends -o Dpkg::Options::=--force-confold "${missing[@]}" >>"$log" 2>&1; then
  cat "$log" >&2
  echo "install-deps: apt-get failed" >&2
  exit 1
fi

for binary in /usr/lib/postgresql/15/bin/initdb pgbackrest protoc openssl; do
  if ! command -v "$binary" >/dev/null 2>&1; then
    echo "install-deps: $binary is still missing after apt-get install" >&2
    exit 1
  fi
done
