#!/usr/bin/env bash
# `make kind-up`: the local Kubernetes of `tilt up`. Creates (once) a local
# registry container kind-registry on 127.0.0.1:5001 and the kind cluster
# `orderflow` (k8s/kind/cluster.yaml), wires them the way kind documents it
# (containerd certs.d hosts.toml on each node, the registry on the `kind`
# network, the local-registry-hosting ConfigMap), then installs ingress-nginx
# and KEDA at pinned versions. Safe to run again. Needs docker, kind (>= 0.30.0,
# the release of the pinned node image in cluster.yaml), kubectl and an internet
# connection (images and the two release manifests).
set -euo pipefail
cd "$(dirname "$0")/../.."

CLUSTER=orderflow
REGISTRY=kind-registry
REGISTRY_PORT=5001
INGRESS_NGINX_VERSION=controller-v1.12.1
KEDA_VERSION=2.16.1
CONTEXT="kind-$CLUSTER"

# kind v0.30.0's release notes ship the node image pinned in cluster.yaml.
KIND_MIN_VERSION=0.30.0
NODE_IMAGE=$(sed -n 's/^ *image: *\(kindest\/node:[^ ]*\)$/\1/p' k8s/kind/cluster.yaml)
NODE_VERSION=${NODE_IMAGE#kindest/node:}
NODE_VERSION=${NODE_VERSION%%@*}

step() { printf '\033[1;34m==>\033[0m %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# version_lt A B: dotted version A is older than B (major.minor.patch, numerically).
version_lt() {
  local IFS=. i
  local -a a b
  a=($1)
  b=($2)
  for i in 0 1 2; do
    [ "${a[i]:-0}" -lt "${b[i]:-0}" ] && return 0
    [ "${a[i]:-0}" -gt "${b[i]:-0}" ] && return 1
  done
  return 1
}

for tool in docker kind kubectl; do
  command -v "$tool" >/dev/null || die "$tool is not installed (see docs/KUBERNETES.md, 'Local cluster')"
done
[ -n "$NODE_VERSION" ] || die "k8s/kind/cluster.yaml pins no kindest/node image"
# `kind version` prints e.g. "kind v0.30.0 go1.24.6 linux/amd64".
KIND_VERSION=$(kind version 2>/dev/null | sed -n 's/^kind v\([0-9][0-9]*\.[0-9][0-9]*\.[0-9][0-9]*\).*/\1/p')
[ -n "$KIND_VERSION" ] || die "cannot read the kind version from \`kind version\`: $(kind version 2>&1 | head -1)"
if version_lt "$KIND_VERSION" "$KIND_MIN_VERSION"; then
  die "kind $KIND_VERSION is too old: the cluster's node image $NODE_IMAGE (Kubernetes $NODE_VERSION, which the chart needs: >= 1.30) is built for kind $KIND_MIN_VERSION. Install kind $KIND_MIN_VERSION or newer (https://kind.sigs.k8s.io/docs/user/quick-start/#installation) and run make kind-up again."
fi

step "local registry $REGISTRY on 127.0.0.1:$REGISTRY_PORT"
if [ "$(docker inspect -f '{{.State.Running}}' "$REGISTRY" 2>/dev/null || true)" != "true" ]; then
  docker rm -f "$REGISTRY" >/dev/null 2>&1 || true
  docker run -d --restart=always -p "127.0.0.1:$REGISTRY_PORT:5000" --network bridge --name "$REGISTRY" registry:2 >/dev/null
fi

step "kind cluster $CLUSTER"
if ! kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  kind create cluster --config k8s/kind/cluster.yaml
fi
# A cluster made earlier (by an older up.sh or kind) may run another Kubernetes.
RUNNING=$(kubectl --context "$CONTEXT" get nodes -o jsonpath='{.items[0].status.nodeInfo.kubeletVersion}' 2>/dev/null || true)
if [ -n "$RUNNING" ] && [ "$RUNNING" != "$NODE_VERSION" ]; then
  die "cluster $CLUSTER runs Kubernetes $RUNNING, not $NODE_VERSION (k8s/kind/cluster.yaml): recreate it with make kind-down && make kind-up"
fi

step "pointing each node's containerd at the registry (localhost:$REGISTRY_PORT -> $REGISTRY:5000)"
for node in $(kind get nodes --name "$CLUSTER"); do
  dir="/etc/containerd/certs.d/localhost:$REGISTRY_PORT"
  docker exec "$node" mkdir -p "$dir"
  printf '[host."http://%s:5000"]\n' "$REGISTRY" | docker exec -i "$node" cp /dev/stdin "$dir/hosts.toml"
done
if [ "$(docker inspect -f '{{json .NetworkSettings.Networks.kind}}' "$REGISTRY")" = "null" ]; then
  docker network connect kind "$REGISTRY"
fi
kubectl --context "$CONTEXT" apply -f k8s/kind/local-registry-hosting.yaml

step "ingress-nginx $INGRESS_NGINX_VERSION (kind provider manifest)"
kubectl --context "$CONTEXT" apply -f \
  "https://raw.githubusercontent.com/kubernetes/ingress-nginx/$INGRESS_NGINX_VERSION/deploy/static/provider/kind/deploy.yaml"

step "KEDA $KEDA_VERSION (release manifest)"
kubectl --context "$CONTEXT" apply --server-side -f \
  "https://github.com/kedacore/keda/releases/download/v$KEDA_VERSION/keda-$KEDA_VERSION.yaml"

step "waiting for ingress-nginx and KEDA"
kubectl --context "$CONTEXT" -n ingress-nginx wait --for=condition=Available deployment/ingress-nginx-controller --timeout=180s
kubectl --context "$CONTEXT" -n keda wait --for=condition=Available deployment --all --timeout=180s

cat <<MSG

kind cluster '$CLUSTER' is ready (kubectl context $CONTEXT), with a registry at localhost:$REGISTRY_PORT.
Next: tilt up        (Tiltfile: dev dependencies, the controller, the services)
Stop: make kind-down
MSG
