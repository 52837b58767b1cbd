#!/usr/bin/env bash
# Build the integration-test control plane from Go modules (through the Go module proxy) and
# cache it outside the repository:
#
#   etcd                                   wrapper module hack/test-cluster/etcd
#   kube-apiserver, kube-controller-manager,
#   kube-scheduler, kubectl                wrapper module hack/test-cluster/kube
#   kwok, kwokctl                          go install sigs.k8s.io/kwok/cmd/...@KWOK_VERSION
#   helm                                   go install helm.sh/helm/v3/cmd/helm@HELM_VERSION
#   contour (+ its CRDs)                   go install github.com/projectcontour/contour/cmd/contour@CONTOUR_VERSION
#   prometheus (with Kubernetes SD)        go install github.com/prometheus/prometheus/cmd/prometheus@PROMETHEUS_VERSION
#   third-party CRDs                       Gateway API (standard channel), Prometheus Operator
#
# Versions live in hack/test-cluster/versions.env. Everything lands in
#   ${MODELSHIP_CACHE:-$HOME/.cache/modelship}/bin/<component>-<version>/
#   ${MODELSHIP_CACHE:-$HOME/.cache/modelship}/crds/<name>-<version>/
# A component whose binaries are already there is not rebuilt, so a warm run takes seconds.
#
# Usage:
#   hack/test-cluster/build.sh              build what is missing, report versions and paths
#   hack/test-cluster/build.sh --print-env  same, but stdout is only `export KEY=VALUE` lines
#                                           (progress goes to stderr): eval "$(... --print-env)"
#   hack/test-cluster/build.sh --update-mod regenerate kube/go.mod (replace block taken from
#                                           k8s.io/kubernetes' own go.mod) and tidy both wrappers
#
# Needs: go (>= the `go` line of the wrapper go.mod files), network access to the Go module
# proxy on a cold run. Cold build on 2 cores: see hack/test-cluster/README.md.
set -euo pipefail
shopt -s inherit_errexit  # a failure inside $(...) stops the script too

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"

cache="${MODELSHIP_CACHE:-$HOME/.cache/modelship}"
bin_root="$cache/bin"
crd_root="$cache/crds"

print_env=false
update_mod=false
for arg in "$@"; do
  case "$arg" in
    --print-env) print_env=true ;;
    --update-mod) update_mod=true ;;
    -h|--help) sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $arg (see --help)" >&2; exit 2 ;;
  esac
done

# Progress always goes to stderr so --print-env output stays clean.
log() { echo "[test-cluster] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

need_go="$(awk '/^go /{print $2; exit}' "$here/kube/go.mod")"
command -v go >/dev/null || die "go is not on PATH (install Go >= $need_go, or >= 1.21 to let it fetch $need_go)"
have_go="$(go env GOVERSION)"; have_go="${have_go#go}"
if [[ "$(printf '%s\n%s\n' "$have_go" "$need_go" | sort -V | head -1)" != "$need_go" ]]; then
  # Go >= 1.21 can fetch the toolchain a module asks for, from the Go module proxy.
  [[ "$(printf '%s\n1.21\n' "$have_go" | sort -V | head -1)" == "1.21" ]] \
    || die "go $have_go is too old: need Go >= $need_go (or >= 1.21, which fetches it)"
  log "go $have_go < $need_go: GOTOOLCHAIN=auto, go fetches go$need_go from the module proxy"
  export GOTOOLCHAIN=auto
fi

export CGO_ENABLED=0
export GOFLAGS="${GOFLAGS:-} -trimpath"

kube_dir="$bin_root/kube-$KUBE_VERSION"
etcd_dir="$bin_root/etcd-$ETCD_VERSION"
kwok_dir="$bin_root/kwok-$KWOK_VERSION"
helm_dir="$bin_root/helm-$HELM_VERSION"
contour_dir="$bin_root/contour-$CONTOUR_VERSION"
prometheus_dir="$bin_root/prometheus-$PROMETHEUS_VERSION"
gateway_dir="$crd_root/gateway-api-$GATEWAY_API_VERSION"
promop_dir="$crd_root/prometheus-operator-$PROMETHEUS_OPERATOR_VERSION"

declare -a timings=()
total_start=$SECONDS

# have DIR FILE... : every FILE exists and is executable in DIR
have() {
  local dir="$1"; shift
  local f
  for f in "$@"; do [[ -x "$dir/$f" ]] || return 1; done
}

# have_files DIR FILE... : every FILE exists in DIR
have_files() {
  local dir="$1"; shift
  local f
  for f in "$@"; do [[ -f "$dir/$f" ]] || return 1; done
}

# Build into a scratch dir next to the target and rename it into place, so an interrupted
# build never looks like a cached one.
# Each build runs in its own subshell (see timed), so the EXIT trap removes a half-built dir.
stage_dir() { mkdir -p "$(dirname "$1")"; mktemp -d "$1.partial.XXXXXX"; }
cleanup_on_exit() { trap "rm -rf '$1'" EXIT; }
publish() { rm -rf "$2"; mv "$1" "$2"; }

timed() {  # timed NAME CMD... : run CMD, record "NAME: Ns (built|cached)"
  local name="$1"; shift
  local start=$SECONDS
  local how
  how="$("$@")"
  timings+=("$(printf '%-28s %5ss  %s' "$name" "$((SECONDS - start))" "$how")")
}

update_mod() {
  local mod kube_v="$KUBE_VERSION" staging_v="v0.${KUBE_VERSION#v1.}"
  mod="$(cd / && go mod download -json "k8s.io/kubernetes@$kube_v" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')"
  [[ -f "$mod" ]] || die "could not download k8s.io/kubernetes@$kube_v go.mod"
  local go_line
  go_line="$(awk '/^go /{print $2; exit}' "$mod")"
  {
    echo "// Wrapper module: builds kube-apiserver, kube-controller-manager, kube-scheduler and kubectl"
    echo "// from k8s.io/kubernetes $kube_v through the Go module proxy. Regenerate with"
    echo "// hack/test-cluster/build.sh --update-mod (replace list copied from k8s.io/kubernetes' own go.mod)."
    echo "module modelship.io/hack/test-cluster/kube"
    echo
    echo "go $go_line"
    echo
    grep '^godebug' "$mod" || true
    echo
    echo "require k8s.io/kubernetes $kube_v"
    echo
    echo "replace ("
    # k8s.io/kubernetes replaces every staging module with ./staging/src/...; the proxy
    # publishes each of them as its own module at v0.<minor>.<patch>.
    sed -n '/^replace (/,/^)/p' "$mod" | awk -v v="$staging_v" '/=> \.\/staging/ {print "\t" $1 " => " $1 " " v}'
    echo ")"
  } > "$here/kube/go.mod"
  (cd "$here/kube" && GOFLAGS=-mod=mod go mod tidy)
  sed -i "s#^require go.etcd.io/etcd/server/v3 .*#require go.etcd.io/etcd/server/v3 $ETCD_VERSION#" "$here/etcd/go.mod"
  (cd "$here/etcd" && GOFLAGS=-mod=mod go mod tidy)
  log "regenerated kube/go.mod for $kube_v and etcd/go.mod for $ETCD_VERSION; commit go.mod and go.sum"
}

check_mod_pins() {
  grep -q "^require k8s.io/kubernetes $KUBE_VERSION\$" "$here/kube/go.mod" \
    || die "kube/go.mod does not pin k8s.io/kubernetes $KUBE_VERSION; run $0 --update-mod"
  grep -q "^require go.etcd.io/etcd/server/v3 $ETCD_VERSION\$" "$here/etcd/go.mod" \
    || die "etcd/go.mod does not pin go.etcd.io/etcd/server/v3 $ETCD_VERSION; run $0 --update-mod"
}

build_etcd() {
  if have "$etcd_dir" etcd; then echo cached; return; fi
  log "building etcd $ETCD_VERSION ..."
  local tmp; tmp="$(stage_dir "$etcd_dir")"
  cleanup_on_exit "$tmp"
  (cd "$here/etcd" && go build -mod=readonly -ldflags "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=${ETCD_VERSION}" \
      -o "$tmp/etcd" .) >&2
  publish "$tmp" "$etcd_dir"
  echo built
}

build_kube() {
  local cmds=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
  if have "$kube_dir" "${cmds[@]}"; then echo cached; return; fi
  log "building ${cmds[*]} $KUBE_VERSION (the slow part) ..."
  local tmp; tmp="$(stage_dir "$kube_dir")"
  cleanup_on_exit "$tmp"
  local v="${KUBE_VERSION#v}" major minor date ld="-s -w" pkg
  major="${v%%.*}"; minor="${v#*.}"; minor="${minor%%.*}"
  date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  # Without these the binaries report v0.0.0-master and the API server's compatibility
  # version checks (and kwokctl's flag selection) go wrong.
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    ld+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$date"
  done
  # go.sum is committed, -mod=readonly keeps the build from changing what it resolves to.
  # One invocation for all commands: they share most packages, so compile work is shared.
  (cd "$here/kube" && go build -mod=readonly -ldflags "$ld" -o "$tmp/" \
      "${cmds[@]/#/k8s.io/kubernetes/cmd/}") >&2
  publish "$tmp" "$kube_dir"
  echo built
}

build_kwok() {
  if have "$kwok_dir" kwok kwokctl; then echo cached; return; fi
  log "building kwok, kwokctl $KWOK_VERSION ..."
  local tmp; tmp="$(stage_dir "$kwok_dir")"
  cleanup_on_exit "$tmp"
  GOBIN="$tmp" go install -ldflags "-s -w" \
    "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" "sigs.k8s.io/kwok/cmd/kwokctl@$KWOK_VERSION" >&2
  publish "$tmp" "$kwok_dir"
  echo built
}

build_helm() {
  if have "$helm_dir" helm; then echo cached; return; fi
  log "building helm $HELM_VERSION ..."
  local tmp; tmp="$(stage_dir "$helm_dir")"
  cleanup_on_exit "$tmp"
  GOBIN="$tmp" go install -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
  publish "$tmp" "$helm_dir"
  echo built
}

# Contour's own CRDs (HTTPProxy, ContourConfiguration, ...) ship in its module, beside the binary.
build_contour() {
  if have "$contour_dir" contour && have_files "$contour_dir" contour-crds.yaml; then echo cached; return; fi
  log "building contour $CONTOUR_VERSION ..."
  local tmp; tmp="$(stage_dir "$contour_dir")"
  cleanup_on_exit "$tmp"
  GOBIN="$tmp" go install -ldflags "-s -w -X github.com/projectcontour/contour/internal/build.Version=$CONTOUR_VERSION" \
    "github.com/projectcontour/contour/cmd/contour@$CONTOUR_VERSION" >&2
  cp "$(module_dir "github.com/projectcontour/contour@$CONTOUR_VERSION")/examples/contour/01-crds.yaml" "$tmp/contour-crds.yaml"
  chmod u+w "$tmp/contour-crds.yaml"
  publish "$tmp" "$contour_dir"
  echo built
}

# Debian's prometheus is built without Kubernetes service discovery; the platform needs it.
# Only that discovery (remove_all_sd + enable_kubernetes_sd: no cloud SDKs to compile), and no
# web UI assets (the `builtinassets` tag needs an npm build): the API is all tests use.
build_prometheus() {
  if have "$prometheus_dir" prometheus; then echo cached; return; fi
  log "building prometheus $PROMETHEUS_VERSION ..."
  local tmp; tmp="$(stage_dir "$prometheus_dir")"
  cleanup_on_exit "$tmp"
  local v="${PROMETHEUS_VERSION#v0.}"
  # Module v0.3MM.P is Prometheus 3.MM.P.
  GOBIN="$tmp" go install -tags netgo,remove_all_sd,enable_kubernetes_sd -ldflags "-s -w -X github.com/prometheus/common/version.Version=3.$((${v%%.*} - 300)).${v#*.}" \
    "github.com/prometheus/prometheus/cmd/prometheus@$PROMETHEUS_VERSION" >&2
  publish "$tmp" "$prometheus_dir"
  echo built
}

# module_dir MODULE@VERSION : the extracted module in the Go module cache
module_dir() {
  local dir
  dir="$(cd / && go mod download -json "$1" | sed -n 's/.*"Dir": "\(.*\)",*/\1/p')"
  [[ -d "$dir" ]] || die "go mod download $1 gave no directory"
  echo "$dir"
}

fetch_gateway_crds() {
  if have_files "$gateway_dir" gateway.networking.k8s.io_httproutes.yaml; then echo cached; return; fi
  local src tmp
  src="$(module_dir "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION")/config/crd/standard"
  tmp="$(stage_dir "$gateway_dir")"
  cleanup_on_exit "$tmp"
  cp "$src"/*.yaml "$tmp/"
  chmod u+w "$tmp"/*.yaml
  publish "$tmp" "$gateway_dir"
  echo fetched
}

promop_kinds=(servicemonitors podmonitors prometheusrules alertmanagerconfigs)
fetch_prometheus_operator_crds() {
  local src tmp kind
  if have_files "$promop_dir" "${promop_kinds[@]/%/.yaml}"; then echo cached; return; fi
  src="$(module_dir "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION")/example/prometheus-operator-crd"
  tmp="$(stage_dir "$promop_dir")"
  cleanup_on_exit "$tmp"
  for kind in "${promop_kinds[@]}"; do
    [[ -f "$src/monitoring.coreos.com_$kind.yaml" ]] || die "missing $src/monitoring.coreos.com_$kind.yaml"
    cp "$src/monitoring.coreos.com_$kind.yaml" "$tmp/$kind.yaml"
  done
  chmod u+w "$tmp"/*.yaml
  publish "$tmp" "$promop_dir"
  echo fetched
}

if $update_mod; then update_mod; exit 0; fi
check_mod_pins

log "cache: $cache   (go $(go env GOVERSION), $(nproc) cores)"
# CRDs first: quick, and a bad pin fails before the long compiles.
timed "gateway-api CRDs $GATEWAY_API_VERSION" fetch_gateway_crds
timed "prom-operator CRDs $PROMETHEUS_OPERATOR_VERSION" fetch_prometheus_operator_crds
timed "etcd $ETCD_VERSION" build_etcd
timed "kwok $KWOK_VERSION" build_kwok
timed "kubernetes $KUBE_VERSION" build_kube
timed "helm $HELM_VERSION" build_helm
timed "contour $CONTOUR_VERSION" build_contour
timed "prometheus $PROMETHEUS_VERSION" build_prometheus

log "build times:"
for t in "${timings[@]}"; do log "  $t"; done
log "  $(printf '%-28s %5ss' total "$((SECONDS - total_start))")"

log "versions:"
log "  $("$etcd_dir/etcd" --version | head -1)"
for c in kube-apiserver kube-controller-manager kube-scheduler; do
  log "  $c: $("$kube_dir/$c" --version 2>&1 | head -1)"
done
log "  kubectl: $("$kube_dir/kubectl" version --client 2>/dev/null | head -1)"
log "  kwok: $("$kwok_dir/kwok" --version 2>&1 | head -1)"
log "  kwokctl: $("$kwok_dir/kwokctl" --version 2>&1 | head -1)"
log "  helm: $("$helm_dir/helm" version --short 2>&1 | head -1)"
log "  prometheus: $("$prometheus_dir/prometheus" --version 2>&1 | head -1)"
log "  contour: $("$contour_dir/contour" version 2>&1 | sed -n 's/^version: //p')"

env_lines=(
  "MODELSHIP_CACHE=$cache"
  "MODELSHIP_K8S_BIN_DIR=$kube_dir"
  "MODELSHIP_ETCD_BIN=$etcd_dir/etcd"
  "MODELSHIP_KWOK_BIN_DIR=$kwok_dir"
  "MODELSHIP_HELM_BIN=$helm_dir/helm"
  "MODELSHIP_CONTOUR_BIN=$contour_dir/contour"
  "MODELSHIP_PROMETHEUS_BIN=$prometheus_dir/prometheus"
  "MODELSHIP_GATEWAY_API_CRDS=$gateway_dir"
  "MODELSHIP_PROMETHEUS_OPERATOR_CRDS=$promop_dir"
)
if $print_env; then
  for l in "${env_lines[@]}"; do printf 'export %s\n' "$l"; done
else
  log "paths:"
  for l in "${env_lines[@]}"; do log "  $l"; done
fi
