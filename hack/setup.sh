#!/usr/bin/env bash
# Sets up a fresh machine for Modelship: the Python venv, and with --test also the Debian
# packages and the Go-built control plane the integration tier needs. Safe to run again:
# every step checks first and skips what is already there.
#   hack/setup.sh          # venv only: enough for `make demo`
#   hack/setup.sh --test   # + prometheus/alertmanager, postgresql, shellcheck, iproute2, the test control
#                          #   plane binaries (and the e2e platform's Contour and Prometheus)
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=false
[[ "${1:-}" == "--test" ]] && want_test=true

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

step() { printf '\n==> %s\n' "$*"; }

if $want_test; then
  missing=()
  # postgresql: the prediction store's tests and the chart's PostgreSQL, run from Debian's binaries
  # (tests/support/images.py);
  # shellcheck: the kind scripts' lint test.
  # iproute2: `ip netns`, veth and bridge for the e2e platform's pod networking.
  for pkg in prometheus prometheus-alertmanager postgresql shellcheck iproute2; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if ((${#missing[@]})); then
    step "apt-get install ${missing[*]}"
    if [[ $(id -u) -eq 0 ]]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # The packages start services on install; tests start their own on loopback ports.
    for svc in prometheus prometheus-alertmanager prometheus-node-exporter postgresql; do
      $SUDO systemctl stop "$svc" >/dev/null 2>&1 || $SUDO service "$svc" stop >/dev/null 2>&1 || true
    done
  fi
fi

stamp="$VENV/.modelship-installed"
if [[ ! -x "$VENV/bin/python" ]]; then
  step "python venv in $VENV"
  "$PYTHON" -m venv "$VENV"
fi
if [[ ! -f "$stamp" || pyproject.toml -nt "$stamp" ]]; then
  step "pip install -e .[dev]"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -e ".[dev]"
  touch "$stamp"
fi

if $want_test; then
  step "test control plane binaries (cached under \${MODELSHIP_CACHE:-~/.cache/modelship})"
  hack/test-cluster/build.sh
fi
