# Developer entry points. Each target is one line that calls a script; the scripts say how.
SHELL := /bin/bash
PYTHON ?= python3

.PHONY: test-cluster-binaries dev-cluster dev-cluster-down

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
