#!/usr/bin/env bash
# Delete the kind cluster of up.sh (and everything in it).
set -euo pipefail
kind delete cluster --name "${KIND_CLUSTER:-modelship}"
