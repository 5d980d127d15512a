#!/usr/bin/env bash
# `npm run kind:e2e`: the documented flows on a real Kubernetes, for a machine with Docker (or Podman),
# kind and kubectl. Creates a kind cluster, installs cert-manager and CloudNativePG, builds the plugin's
# image and loads it into kind, installs the plugin (manifest.yaml), MinIO (examples/minio.yaml), then:
# Secret, Stanza, Cluster; waits for WAL archiving; a Backup through the plugin; rows written after it;
# a Cluster restored from the Stanza; and checks that every row is in the restored cluster.
# Not run in CI here (no container engine); KEEP=1 keeps the kind cluster at the end.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CLUSTER_NAME="${KIND_CLUSTER:-cnpg-pgbackrest}"
IMAGE="cnpg-plugin-pgbackrest:e2e"
ENGINE="${CONTAINER_ENGINE:-$(command -v docker || command -v podman || true)}"
CNPG_VERSION="${CNPG_VERSION:-1.27.1}"
CERT_MANAGER_VERSION="${CERT_MANAGER_VERSION:-v1.19.1}"

for tool in kind kubectl; do
  command -v "$tool" >/dev/null || { echo "kind:e2e needs $tool" >&2; exit 1; }
done
[[ -n "$ENGINE" ]] || { echo "kind:e2e needs docker or podman" >&2; exit 1; }

step() { printf '\n▸ %s\n' "$*"; }
cleanup() {
  if [[ "${KEEP:-0}" != 1 ]]; then kind delete cluster --name "$CLUSTER_NAME" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

step "kind cluster $CLUSTER_NAME"
kind get clusters | grep -qx "$CLUSTER_NAME" || kind create cluster --name "$CLUSTER_NAME" --wait 120s

step "cert-manager $CERT_MANAGER_VERSION and CloudNativePG $CNPG_VERSION"
kubectl apply -f "https://github.com/cert-manager/cert-manager/releases/download/${CERT_MANAGER_VERSION}/cert-manager.yaml"
kubectl -n cert-manager rollout status deployment/cert-manager-webhook --timeout=300s
kubectl apply --server-side -f \
  "https://raw.githubusercontent.com/cloudnative-pg/cloudnative-pg/release-${CNPG_VERSION%.*}/releases/cnpg-${CNPG_VERSION}.yaml"
kubectl -n cnpg-system rollout status deployment/cnpg-controller-manager --timeout=300s

step "the plugin's image ($IMAGE), loaded into kind"
"$ENGINE" build -t "$IMAGE" -f Containerfile .
if [[ "$(basename "$ENGINE")" == podman ]]; then
  "$ENGINE" save "$IMAGE" -o /tmp/cnpg-plugin-pgbackrest.tar && kind load image-archive /tmp/cnpg-plugin-pgbackrest.tar --name "$CLUSTER_NAME"
else
  kind load docker-image "$IMAGE" --name "$CLUSTER_NAME"
fi

step "the plugin (manifest.yaml, image $IMAGE)"
sed "s#image: cnpg-plugin-pgbackrest:latest#image: $IMAGE#; s#value: cnpg-plugin-pgbackrest:latest#value: $IMAGE#" manifest.yaml | kubectl apply -f -
kubectl -n cnpg-system rollout status deployment/pgbackrest --timeout=300s

step "MinIO over HTTPS (examples/minio.yaml)"
kubectl apply -f examples/minio.yaml
kubectl -n minio wait --for=condition=complete job/minio-buckets --timeout=300s

step "Secret, Stanza (with MinIO's CA), Cluster"
kubectl apply -f examples/secret.yaml
kubectl apply -f examples/stanza.yaml
kubectl patch stanza stanza-sample --type=json -p \
  '[{"op":"add","path":"/spec/stanzaConfiguration/s3Repositories/0/endpointCA","value":{"name":"minio-ca","key":"ca.crt"}}]'
sed "s#instances: 3#instances: 1#" examples/cluster.yaml | kubectl apply -f -
kubectl wait --for=condition=Ready cluster/cluster-demo --timeout=600s

psql_in() { kubectl exec "$1" -c postgres -- psql -XAtq -d postgres -c "$2"; }
step "WAL archiving through the plugin"
psql_in cluster-demo-1 "CREATE TABLE e2e (id int PRIMARY KEY, phase text); INSERT INTO e2e SELECT g, 'before' FROM generate_series(1, 1000) g"
psql_in cluster-demo-1 "SELECT pg_switch_wal()" >/dev/null
kubectl wait --for=condition=ContinuousArchiving cluster/cluster-demo --timeout=300s

step "a Backup through the plugin (examples/backup.yaml)"
kubectl apply -f examples/backup.yaml
kubectl wait --for=jsonpath='{.status.phase}'=completed backup/backup-demo --timeout=900s
kubectl get backup backup-demo -o jsonpath='{.status.backupId} {.status.beginWal} {.status.endWal}{"\n"}'

step "rows after the backup, archived"
psql_in cluster-demo-1 "INSERT INTO e2e SELECT g, 'after' FROM generate_series(1001, 1500) g; SELECT pg_switch_wal()" >/dev/null
last=$(psql_in cluster-demo-1 "SELECT pg_walfile_name(pg_current_wal_lsn())")
for _ in $(seq 1 60); do
  archived=$(psql_in cluster-demo-1 "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
  [[ "$archived" < "$last" ]] || break
  sleep 5
done

step "a Cluster restored from the Stanza (examples/cluster-restored.yaml)"
kubectl apply -f examples/cluster-restored.yaml
kubectl wait --for=condition=Ready cluster/cluster-restored --timeout=900s
count=$(psql_in cluster-restored-1 "SELECT count(*) FROM e2e")
echo "rows in the restored cluster: $count (expected 1500)"
[[ "$count" == 1500 ]] || { echo "kind:e2e FAILED: rows missing after restore" >&2; exit 1; }
echo "kind:e2e passed"
