#!/usr/bin/env bash
# The kind cluster and the add-ons every Modelship user has: a Gateway API implementation
# (Envoy Gateway, exposed on localhost:8000) and kube-prometheus-stack (release `kps`).
# Idempotent: an existing cluster or release is upgraded in place. Needs docker, kind, helm, kubectl.
set -euo pipefail
cd "$(dirname "$0")/../.."

CLUSTER=${KIND_CLUSTER:-modelship}
# Pinned together; bump them together.
ENVOY_GATEWAY_VERSION=${ENVOY_GATEWAY_VERSION:-v1.5.0}
KUBE_PROMETHEUS_STACK_VERSION=${KUBE_PROMETHEUS_STACK_VERSION:-77.0.0}

step() { printf '\n==> %s\n' "$*"; }

if ! kind get clusters | grep -qx "$CLUSTER"; then
  step "kind create cluster $CLUSTER"
  kind create cluster --name "$CLUSTER" --config hack/kind/kind-config.yaml --wait 120s
fi
kubectl config use-context "kind-$CLUSTER" >/dev/null

step "Envoy Gateway $ENVOY_GATEWAY_VERSION (with the Gateway API CRDs)"
helm upgrade --install eg oci://docker.io/envoyproxy/gateway-helm --version "$ENVOY_GATEWAY_VERSION" \
  --namespace envoy-gateway-system --create-namespace --wait --timeout 5m
kubectl apply -f hack/kind/gateway.yaml

step "kube-prometheus-stack $KUBE_PROMETHEUS_STACK_VERSION (release kps in monitoring)"
helm repo add prometheus-community https://prometheus-community.github.io/helm-charts >/dev/null
helm repo update prometheus-community >/dev/null
# fullnameOverride: the Prometheus Service is kps-prometheus (hack/kind/values.yaml's operator.prometheusUrl).
helm upgrade --install kps prometheus-community/kube-prometheus-stack --version "$KUBE_PROMETHEUS_STACK_VERSION" \
  --namespace monitoring --create-namespace --set fullnameOverride=kps --wait --timeout 10m
