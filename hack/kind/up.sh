#!/usr/bin/env bash
# Modelship on kind in one command: the cluster and its add-ons (cluster.sh), the four images
# built and loaded, `helm install` with hack/kind/values.yaml, the diabetes sample applied and a
# prediction printed through the gateway (predict.sh). Run again to rebuild and upgrade.
set -euo pipefail
cd "$(dirname "$0")/../.."

CLUSTER=${KIND_CLUSTER:-modelship}
TAG=dev
IMAGES=(operator:operator/Dockerfile training:training-jobs/Dockerfile serving:model-service/Dockerfile mlflow:mlflow-server/Dockerfile)

KIND_CLUSTER=$CLUSTER hack/kind/cluster.sh

for entry in "${IMAGES[@]}"; do
  name=modelship-${entry%%:*}
  printf '\n==> docker build %s:%s\n' "$name" "$TAG"
  docker build -q -f "${entry#*:}" -t "$name:$TAG" .
  kind load docker-image "$name:$TAG" --name "$CLUSTER"
done

printf '\n==> helm upgrade --install modelship\n'
# Helm creates crds/ on the first install only; later runs upgrade the CRD the way
# `modelship crd --apply` does (server-side apply, field manager modelship).
kubectl apply --server-side --force-conflicts --field-manager=modelship -f charts/modelship/crds/
helm upgrade --install modelship charts/modelship --namespace modelship-system --create-namespace \
  -f hack/kind/values.yaml --wait --timeout 10m

printf '\n==> kubectl apply the diabetes sample\n'
kubectl apply -f manifests/samples/diabetes-builtin.yaml
hack/kind/predict.sh
