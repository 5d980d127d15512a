#!/usr/bin/env bash
# Builds CloudNativePG's own `manager` (its instance manager: `wal-archive`, `wal-restore`) for every
# version pinned under test/manager/<version>/, the test peer of test/e2e/cnpgManager.test.ts.
#
# `go install github.com/cloudnative-pg/cloudnative-pg/cmd/manager@<version>` would be the ordinary way,
# but it looks up the module's version list for deprecations, which the module proxy reachable here
# refuses (403); building from a small module that requires the version needs only that version's
# files, and its go.sum pins every dependency. Module and build caches live outside the clone
# ($CNPG_MANAGER_CACHE, default ~/.cache/cnpg-manager), so a machine pays each build once: about
# 4 to 6 minutes cold on two cores, under a second when cached.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cache="${CNPG_MANAGER_CACHE:-$HOME/.cache/cnpg-manager}"
if ! command -v go >/dev/null 2>&1; then
  if [[ -x /usr/local/go/bin/go ]]; then
    PATH="/usr/local/go/bin:$PATH"
  else
    echo "build-cnpg-manager: Go is missing (the tests build CloudNativePG's manager with it)" >&2
    exit 1
  fi
fi
export GOMODCACHE="$cache/mod" GOCACHE="$cache/build" GOFLAGS=-modcacherw CGO_ENABLED=0 GOTOOLCHAIN=local

for dir in test/manager/v*/; do
  version="$(basename "$dir")"
  out="$cache/bin/$version"
  # The binary is rebuilt when the pinned module changes.
  stamp="$(cat "$dir/go.mod" "$dir/go.sum" | sha256sum | cut -d' ' -f1)"
  if [[ -x "$out/manager" && "$(cat "$out/stamp" 2>/dev/null)" == "$stamp" ]]; then
    continue
  fi
  echo "build-cnpg-manager: building CloudNativePG $version (cached in $cache)"
  started=$SECONDS
  mkdir -p "$out"
  (cd "$dir" && go build -tags peer -trimpath -o "$out/manager" \
    -ldflags "-s -w -X github.com/cloudnative-pg/cloudnative-pg/pkg/versions.buildVersion=${version#v}" \
    github.com/cloudnative-pg/cloudnative-pg/cmd/manager)
  echo "$stamp" >"$out/stamp"
  echo "build-cnpg-manager: $version built in $((SECONDS - started)) s"
done
