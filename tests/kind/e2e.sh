#!/usr/bin/env bash
# sixlane end to end on kind: an IPv6-only cluster with sixlane as CNI and service proxy.
#
#   tests/kind/e2e.sh            create the cluster, load the image, deploy, check, delete
#   tests/kind/e2e.sh --keep     ... and leave the cluster running
#   tests/kind/e2e.sh --dry-run  what CI runs: shellcheck this script, validate the manifests
#                                against the Kubernetes schemas (kubernetes-validate, pinned,
#                                installed from PyPI into target/tools), check the kind config
#                                and the agent configuration, and print every command the real
#                                run would execute without executing any.
#
# The image is built exactly as everywhere else: `cargo xtask image` (buildah, from Debian
# packages, no registry) writes target/image/sixlane.tar, which `kind load image-archive` puts on
# the nodes; the manifests are applied unchanged. tests/tests/daemonset.rs runs the same image
# and manifests under containerd's CRI on the development machine.
#
# Needs for a real run: kind, kubectl, docker (or podman with KIND_EXPERIMENTAL_PROVIDER=podman)
# for the cluster, buildah and mmdebstrap for the image (cargo xtask setup installs them), and a
# machine that can pull kind's node and test images. NOT run on sixlane's development machine
# (kind cannot run there): only the dry run is exercised in CI.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CLUSTER=${CLUSTER:-sixlane}
IMAGE=sixlane/sixlane:dev
IMAGE_ARCHIVE=$ROOT/target/image/sixlane.tar
ENGINE=${ENGINE:-docker}
NAT64_PREFIX=${NAT64_PREFIX:-64:ff9b::}
VALIDATOR_VERSION=1.37.0
# Kubernetes versions the manifests must be valid for (oldest supported, newest).
K8S_VERSIONS=(1.33.0 1.37.0)
TOOLS=${SIXLANE_TOOLS:-$ROOT/target/tools}
AGENT=${SIXLANE_AGENT:-$ROOT/target/debug/sixlane-agent}
CLIENT_IMAGE=registry.k8s.io/e2e-test-images/agnhost:2.53

DRY=0
KEEP=0
for arg in "$@"; do
  case $arg in
    --dry-run) DRY=1 ;;
    --keep) KEEP=1 ;;
    -h | --help)
      sed -n '2,20p' "$0"
      exit 0
      ;;
    *)
      echo "e2e: unknown argument $arg" >&2
      exit 2
      ;;
  esac
done

step() { printf '\n==> %s\n' "$*" >&2; }
fail() {
  echo "e2e: FAILED: $*" >&2
  exit 1
}
# Runs a command, or prints it in a dry run.
run() {
  if ((DRY)); then
    printf '+ %s\n' "$*"
  else
    "$@"
  fi
}
# Runs a command for its output; a dry run prints it and returns $1 as a stand-in.
capture() {
  local standin=$1
  shift
  if ((DRY)); then
    printf '+ %s\n' "$*" >&2
    printf '%s\n' "$standin"
  else
    "$@"
  fi
}
kc() { run kubectl --context "kind-$CLUSTER" "$@"; }
kcap() {
  local standin=$1
  shift
  capture "$standin" kubectl --context "kind-$CLUSTER" "$@"
}

# Kubernetes resources among the manifests (the kind config, the Containerfile and the agent's
# example config are not).
k8s_manifests() {
  local f
  for f in "$ROOT"/manifests/*.yaml; do
    case $(basename "$f") in
      kind-*.yaml | config.example.yaml) ;;
      *) printf '%s\n' "$f" ;;
    esac
  done
}

static_checks() {
  step "shellcheck"
  command -v shellcheck >/dev/null || fail "shellcheck missing (cargo xtask setup installs it)"
  shellcheck "$ROOT"/tests/kind/*.sh

  step "installing kubernetes-validate $VALIDATOR_VERSION (PyPI) into $TOOLS/venv"
  local venv=$TOOLS/venv
  if ! "$venv/bin/kubernetes-validate" --version 2>/dev/null | grep -q "$VALIDATOR_VERSION"; then
    python3 -m venv "$venv" || fail "python3 -m venv (python3-venv missing?)"
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
      "kubernetes-validate==$VALIDATOR_VERSION" || fail "pip install kubernetes-validate"
  fi

  local manifests=()
  mapfile -t manifests < <(k8s_manifests)
  ((${#manifests[@]} >= 3)) || fail "expected the DaemonSet, RBAC and ConfigMap manifests"
  local v
  for v in "${K8S_VERSIONS[@]}"; do
    step "validating ${#manifests[@]} manifest files against Kubernetes $v (strict)"
    "$venv/bin/kubernetes-validate" --strict --quiet -k "$v" "${manifests[@]}" ||
      fail "manifests do not validate against Kubernetes $v"
  done

  step "checking the DaemonSet runs the image cargo xtask image builds"
  "$venv/bin/python" - "$ROOT/manifests/daemonset.yaml" "$IMAGE" <<'PY' || fail "DaemonSet image"
import sys, yaml
ds = next(d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] == "DaemonSet")
spec = ds["spec"]["template"]["spec"]
images = {c["image"] for c in spec.get("initContainers", []) + spec["containers"]}
assert images == {sys.argv[2]}, f"DaemonSet images {images}, the build makes {sys.argv[2]}"
print(f"DaemonSet image: {sys.argv[2]}")
PY

  step "checking the kind config"
  "$venv/bin/python" - "$ROOT/manifests/kind-ipv6.yaml" <<'PY' || fail "kind config"
import sys, yaml
c = yaml.safe_load(open(sys.argv[1]))
n = c.get("networking", {})
want = {"ipFamily": "ipv6", "disableDefaultCNI": True, "kubeProxyMode": "none"}
bad = {k: n.get(k) for k, v in want.items() if n.get(k) != v}
assert c.get("kind") == "Cluster" and c.get("apiVersion") == "kind.x-k8s.io/v1alpha4", c
assert not bad, f"networking keys wrong: {bad}"
assert ":" in n.get("podSubnet", "") and ":" in n.get("serviceSubnet", ""), n
print("kind config: IPv6-only, no default CNI, no kube-proxy")
PY

  step "validating the agent configuration shipped in the ConfigMap"
  [[ -x $AGENT ]] || fail "$AGENT missing (cargo build -p sixlane-agent)"
  local cfg
  cfg=$(mktemp)
  "$TOOLS/venv/bin/python" - "$ROOT/manifests/configmap.yaml" >"$cfg" <<'PY' || fail "ConfigMap"
import sys, yaml
for d in yaml.safe_load_all(open(sys.argv[1])):
    if d and d["metadata"]["name"] == "sixlane-agent-config":
        sys.stdout.write(d["data"]["config.yaml"])
        break
else:
    sys.exit("sixlane-agent-config not found")
PY
  "$AGENT" run --config "$cfg" --check-config >/dev/null || {
    rm -f "$cfg"
    fail "the ConfigMap's config.yaml is not a valid agent configuration"
  }
  rm -f "$cfg"
  echo "agent configuration valid"
}

cleanup() {
  if ((KEEP)); then
    echo "e2e: cluster $CLUSTER left running (kind delete cluster --name $CLUSTER)" >&2
  else
    run kind delete cluster --name "$CLUSTER" || true
    run "$ENGINE" rm -f "$CLUSTER-ipv4-server" >/dev/null 2>&1 || true
  fi
}

e2e() {
  if ((!DRY)); then
    local t
    for t in kind kubectl "$ENGINE" cargo buildah mmdebstrap; do
      command -v "$t" >/dev/null || fail "$t is needed for a real run"
    done
  fi

  step "building sixlane's image (the DaemonSet's $IMAGE)"
  run cargo xtask image --tag "$IMAGE" --out "$IMAGE_ARCHIVE"

  step "creating the IPv6-only kind cluster $CLUSTER"
  run kind create cluster --name "$CLUSTER" --config "$ROOT/manifests/kind-ipv6.yaml" --wait 0s
  if ((DRY)); then cleanup; else trap cleanup EXIT; fi
  run kind load image-archive "$IMAGE_ARCHIVE" --name "$CLUSTER"

  step "deploying sixlane"
  local apiserver
  apiserver=$(capture "fc00:f853:ccd:e793::2" "$ENGINE" inspect -f \
    '{{range .NetworkSettings.Networks}}{{.GlobalIPv6Address}}{{end}}' "$CLUSTER-control-plane")
  [[ $apiserver == *:* ]] || fail "no IPv6 address for $CLUSTER-control-plane"
  kc apply -f "$ROOT/manifests/rbac.yaml" -f "$ROOT/manifests/configmap.yaml"
  kc -n kube-system create configmap sixlane-agent-apiserver \
    --from-literal=KUBERNETES_SERVICE_HOST="$apiserver" \
    --from-literal=KUBERNETES_SERVICE_PORT=6443 --dry-run=client -o yaml |
    if ((DRY)); then cat; else kubectl --context "kind-$CLUSTER" apply -f -; fi
  kc apply -f "$ROOT/manifests/daemonset.yaml"
  if [[ -f $ROOT/manifests/coredns-dns64.yaml ]]; then
    kc apply -f "$ROOT/manifests/coredns-dns64.yaml"
  fi
  kc -n kube-system rollout status ds/sixlane-agent --timeout=180s
  kc wait --for=condition=Ready nodes --all --timeout=180s
  kc -n kube-system rollout status deploy/coredns --timeout=180s

  step "workloads: a web Deployment (ClusterIP + NodePort) and a client"
  kc create deployment web --image="$CLIENT_IMAGE" --replicas=2 -- /agnhost netexec --http-port=8080
  kc expose deployment web --port=80 --target-port=8080 --type=NodePort --name=web
  kc run client --image="$CLIENT_IMAGE" --restart=Never -- /agnhost pause
  kc rollout status deploy/web --timeout=180s
  kc wait --for=condition=Ready pod/client --timeout=180s

  step "pods have IPv6 addresses only"
  local ips
  ips=$(kcap "fd00:10:244:1::5 fd00:10:244:2::7 fd00:10:244:1::9" get pods -o \
    jsonpath='{range .items[*]}{range .status.podIPs[*]}{.ip}{" "}{end}{end}')
  for ip in $ips; do
    [[ $ip == *:* && $ip != *.* ]] || fail "pod address $ip is not IPv6"
  done
  [[ -n $ips ]] || fail "no pod addresses"

  step "CoreDNS resolves the service"
  # agnhost ships dig (bind-tools); the expansion happens in the pod.
  # shellcheck disable=SC2016
  kc exec client -- sh -c 'test -n "$(dig +short AAAA web.default.svc.cluster.local)"'

  step "ClusterIP reaches a backend (possibly on the other node)"
  kc exec client -- /agnhost connect --timeout=5s web:80
  kc exec client -- curl -sf -m 5 http://web/hostname

  step "NodePort from outside the cluster"
  local nodeport node_ip
  nodeport=$(kcap 30080 get svc web -o jsonpath='{.spec.ports[0].nodePort}')
  node_ip=$(capture "fc00:f853:ccd:e793::3" "$ENGINE" inspect -f \
    '{{range .NetworkSettings.Networks}}{{.GlobalIPv6Address}}{{end}}' "$CLUSTER-worker")
  run "$ENGINE" exec "$CLUSTER-control-plane" curl -sf -m 5 "http://[$node_ip]:$nodeport/hostname"

  step "NAT64: a pod reaches an IPv4-only server"
  run "$ENGINE" run -d --name "$CLUSTER-ipv4-server" --network kind "$CLIENT_IMAGE" netexec --http-port=8080
  local v4
  v4=$(capture "172.18.0.9" "$ENGINE" inspect -f \
    '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$CLUSTER-ipv4-server")
  [[ $v4 == *.* ]] || fail "the IPv4 server has no IPv4 address"
  kc exec client -- curl -sf -m 5 "http://[${NAT64_PREFIX}${v4}]:8080/hostname"

  step "agent CLI and metrics"
  local agent_pod
  agent_pod=$(kcap sixlane-agent-xxxxx -n kube-system get pods -l app.kubernetes.io/name=sixlane-agent \
    -o jsonpath='{.items[0].metadata.name}')
  kc -n kube-system exec "$agent_pod" -- sixlane-agent status
  kc -n kube-system exec "$agent_pod" -- sixlane-agent ipam
  kc -n kube-system exec "$agent_pod" -- sixlane-agent lb
  if ((!DRY)); then echo "e2e: all checks passed" >&2; fi
}

if ((DRY)); then
  static_checks
  step "the real run's commands (not executed)"
  e2e
  echo "e2e --dry-run: ok (the cluster part was NOT run: it needs kind and a container engine)" >&2
else
  e2e
fi
