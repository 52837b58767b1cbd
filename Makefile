# Developer entry points. Each target is one line that calls a script; the scripts say how.
SHELL := /bin/bash
PYTHON ?= python3

VENV ?= .venv
SAMPLE ?= manifests/samples/diabetes-builtin.yaml

.PHONY: setup demo test test-unit crd test-cluster-binaries dev-cluster dev-cluster-down platform platform-down kind-up kind-down

## The venv with every extra (operator, training, serving, dev tools).
setup:
	hack/setup.sh

## The main job: train and serve $(SAMPLE) locally with the pods' entrypoints, print a prediction.
demo: setup
	$(VENV)/bin/modelship run -f $(SAMPLE)

## Everything a fresh machine needs (apt packages, venv, Go-built control plane), then all tests.
test:
	hack/setup.sh --test
	$(VENV)/bin/python -m pytest

## The fast tier: pure functions, the CRD generator, small real trainings, no cluster.
test-unit: setup
	$(VENV)/bin/python -m pytest tests/unit

## Regenerate the CRD from the pydantic models, and the Prometheus rules and Grafana dashboards
## from the metric names (a unit test fails when one is stale).
crd: setup
	$(VENV)/bin/modelship crd --write
	$(VENV)/bin/modelship monitoring rules --write
	$(VENV)/bin/modelship monitoring dashboards --write
	$(VENV)/bin/modelship monitoring alertmanager --write

## Build (or find cached) etcd, kube-apiserver/controller-manager/scheduler, kubectl, kwok,
## helm and the third-party CRDs under $${MODELSHIP_CACHE:-~/.cache/modelship}.
test-cluster-binaries:
	hack/test-cluster/build.sh

## Start the integration-test control plane (KWOK nodes) for a person; prints the kubeconfig.
dev-cluster: test-cluster-binaries
	$(PYTHON) hack/test-cluster/testcluster.py up

## Stop the dev cluster and remove its state.
dev-cluster-down:
	$(PYTHON) hack/test-cluster/testcluster.py down

## The whole platform on this machine (root: a network namespace per pod): control plane, process
## kubelet, Contour + Envoy, MLflow, Prometheus, Alertmanager, the operator, the sample applied;
## prints the URLs and a curl through the gateway. Runs in the foreground: Ctrl-C stops it.
platform: setup test-cluster-binaries
	$(VENV)/bin/python hack/platform/localplatform.py up --sample $(SAMPLE)

## Stop a platform started by `make platform` in another shell.
platform-down:
	$(VENV)/bin/python hack/platform/localplatform.py down

## Modelship on kind (needs Docker, kind, helm, kubectl): cluster + Envoy Gateway +
## kube-prometheus-stack, images built and loaded, helm install, the sample, a prediction.
kind-up:
	hack/kind/up.sh

## Delete the kind cluster.
kind-down:
	hack/kind/down.sh
