#!/usr/bin/env bash
# Wait for the diabetes sample to be Ready, then post one record through the gateway.
set -euo pipefail

NAMESPACE=${SAMPLE_NAMESPACE:-default}
ENDPOINT=${ENDPOINT_BASE_URL:-http://localhost:8000}
# The first row of scikit-learn's diabetes data set (its features are already scaled).
RECORD='{"age": 0.0381, "sex": 0.0507, "bmi": 0.0617, "bp": 0.0219, "s1": -0.0442, "s2": -0.0348, "s3": -0.0434, "s4": -0.0026, "s5": 0.0199, "s6": -0.0176}'

echo "==> waiting for modeldeployment/diabetes to be Ready (training, then serving)"
kubectl wait "modeldeployment/diabetes" -n "$NAMESPACE" --for=condition=Ready --timeout=15m
kubectl get modeldeployment diabetes -n "$NAMESPACE"

echo "==> POST $ENDPOINT/$NAMESPACE/diabetes/predict"
echo "request:  $RECORD"
for _ in $(seq 30); do
  if answer=$(curl -sf -H 'Content-Type: application/json' -d "$RECORD" "$ENDPOINT/$NAMESPACE/diabetes/predict"); then
    echo "response: $answer"
    exit 0
  fi
  sleep 2  # the route reaches the proxy a moment after the model is Ready
done
echo "no answer from $ENDPOINT/$NAMESPACE/diabetes/predict" >&2
exit 1
