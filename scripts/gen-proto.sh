#!/usr/bin/env bash
# Generates the TypeScript protobuf code in src/generated/ from proto/*.proto with ts-proto.
#   scripts/gen-proto.sh          regenerate src/generated/ (wiped first: no stale files)
#   scripts/gen-proto.sh --check  generate into a temp dir and fail if src/generated/ differs
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

PLUGIN="node_modules/.bin/protoc-gen-ts_proto"
OUT="src/generated"

if [[ ! -x "$PLUGIN" ]]; then
  echo "gen-proto: $PLUGIN not found, run npm ci first" >&2
  exit 1
fi
if ! command -v protoc >/dev/null 2>&1; then
  echo "gen-proto: protoc not found in PATH" >&2
  exit 1
fi

# The plugin is a node script: make sure the project's Node (node_modules/.bin, Node 24) comes first.
export PATH="$PWD/node_modules/.bin:$PATH"

# nice-grpc: the `XServiceImplementation` / `XClient` interfaces; generic-definitions: the `XDefinition`
# objects (name, fullName, methods) that nice-grpc's createServer().add() and createClient() take.
# Both are needed: nice-grpc alone does not emit the definitions.
# Note: the header of each generated file names the protoc and ts-proto versions, so `--check` expects
# the same protoc (3.21.12) as the one that generated the committed code.
# forceLong=number: int64 fields (started_at, requeue_after) are plain numbers (seconds fit easily).
# oneof=unions-value: oneofs are `{ $case: "service"; value: ... }` discriminated unions.
# useOptionals=none + useExactTypes=false: plain required fields, no Exact<> helper types.
# No JSON or fromPartial methods: only the binary codec is used on the wire.
TS_PROTO_OPTS="outputServices=nice-grpc,outputServices=generic-definitions,esModuleInterop=true,useExactTypes=false,forceLong=number,oneof=unions-value,useOptionals=none,importSuffix=.js,outputJsonMethods=false,outputPartialMethods=false,env=node,annotateFilesWithVersion=false"

generate() {
  local dest="$1"
  mkdir -p "$dest"
  protoc \
    --plugin="protoc-gen-ts_proto=$PLUGIN" \
    --ts_proto_out="$dest" \
    --ts_proto_opt="$TS_PROTO_OPTS" \
    -I proto \
    proto/*.proto
}

if [[ "${1:-}" == "--check" ]]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  generate "$tmp"
  if ! diff -r "$tmp" "$OUT" >/dev/null 2>&1; then
    diff -ru "$OUT" "$tmp" || true
    echo "gen-proto: $OUT is out of date with proto/; run 'npm run proto' and commit the result" >&2
    exit 1
  fi
  echo "gen-proto: $OUT is up to date"
  exit 0
fi

rm -rf "$OUT"
generate "$OUT"
echo "gen-proto: generated $(find "$OUT" -name '*.ts' | wc -l) files in $OUT"
