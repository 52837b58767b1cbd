"""What people ask of a rollout, on the real control plane with the real operator, MLflow, model
servers and Prometheus (the setting of test_rollout.py, whose fixtures and helpers this reuses):
``modelship abort`` during a canary step, and a cold ``modelship rollback`` — after
``rollbackWindow`` has removed the previous champion's warm Deployment, so it is made again and
its model server loads the version from MLflow before traffic moves back."""

from __future__ import annotations

import time

import pytest
import yaml

from integration.test_operator import mlflow_server  # noqa: F401  (a fixture)
from integration.test_rollout import (  # noqa: F401  (rollout_env is a fixture)
    NAME,
    Fleet,
    TrafficDriver,
    deployments,
    events,
    modelship,
    new_version,
    patch_spec,
    resource,
    rollout_env,
    route_weights,
    wait_status,
)
from modelship.api import names
from modelship.operator.conditions import condition

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: Short, so the previous champion's warm copy is gone within the test.
ROLLBACK_WINDOW = "15s"


def test_abort_mid_canary_and_a_cold_rollback(cluster, namespace, rollout_env):
    from mlflow import MlflowClient

    fleet: Fleet = rollout_env["fleet"]
    registry = MlflowClient(tracking_uri=rollout_env["mlflow"].url)
    model_name = f"{namespace}-{NAME}"

    manifest = resource(namespace, alpha=1.0)
    manifest["spec"]["rollout"]["rollbackWindow"] = ROLLBACK_WINDOW
    # Long pauses: the abort (a CLI process, seconds on a loaded machine) lands during a step.
    manifest["spec"]["rollout"]["canary"]["steps"] = [{"weight": 20, "pause": "60s"}, {"weight": 60, "pause": "60s"}, {"weight": 100, "pause": "5s"}]
    cluster.apply(yaml.safe_dump(manifest))
    wait_status(cluster, namespace, "version 1 to be champion", lambda s: s.get("championVersion") == "1" and s.get("phase") == "Serving")
    fleet.serve("1", "champion")

    with TrafficDriver(lambda: route_weights(cluster, namespace), fleet.urls) as traffic:
        # 1. Abort during a canary step: the candidate goes to 0 %, the champion takes all, the
        #    alias never moved; the resource says a person aborted it.
        patch_spec(cluster, namespace, {"training": {"hyperparameters": {"alpha": 2.0}}})
        new_version(cluster, namespace, "2")
        fleet.serve("2", "canary")
        cluster.wait_until("version 2 to take traffic", lambda: route_weights(cluster, namespace).get(f"{NAME}-v2", 0) > 0, timeout=120, interval=0.3)
        # The route is applied before the status is written: wait for the status too.
        wait_status(cluster, namespace, "version 2's canary step in status", lambda s: (s.get("rollout") or {}).get("phase") == "Progressing" and s["rollout"].get("candidate") == "2", timeout=30)
        aborted = modelship(cluster, "abort", NAME, "-n", namespace)
        assert aborted.returncode == 0, aborted.stderr
        cluster.wait_until("the route to send everything to version 1", lambda: route_weights(cluster, namespace) == {f"{NAME}-v1": 100}, timeout=30, interval=0.2)
        after = wait_status(cluster, namespace, "the abort in status", lambda s: (s.get("rollout") or {}).get("phase") == "RolledBack", timeout=30)
        promoted = condition(after["conditions"], "Promoted")
        assert promoted["status"] == "False" and promoted["reason"] == "Aborted", promoted
        assert "aborted by a person" in promoted["message"] and names.ABORT_ANNOTATION in promoted["message"], promoted
        assert after["championVersion"] == "1" and after["rollout"]["candidate"] == "2"
        assert registry.get_model_version_by_alias(model_name, "champion").version == "1"
        warning = [e for e in events(cluster, namespace) if e["reason"] == "Aborted"]
        assert warning and warning[0]["type"] == "Warning" and "aborted by a person" in warning[0]["message"], warning
        # At no traffic, kept for inspection (MODELSHIP_RETAIN_ROLLED_BACK_SECONDS=20, then
        # removed: test_rollout.py waits for that).
        assert f"{NAME}-v2" in deployments(cluster, namespace)
        assert max(w.get(f"{NAME}-v2", 0) for w in traffic.seen) <= 20, traffic.seen  # aborted in the first step
        again = modelship(cluster, "abort", NAME, "-n", namespace)
        assert again.returncode == 1 and "no rollout in flight to abort" in again.stderr

        # 2. Version 3 is promoted (at once: the canary path is test_rollout.py's); after
        #    rollbackWindow version 1's warm Deployment is removed.
        patch_spec(cluster, namespace, {"training": {"hyperparameters": {"alpha": 3.0}}, "rollout": {"strategy": "immediate"}})
        new_version(cluster, namespace, "3")
        promoted3 = wait_status(cluster, namespace, "version 3 to be promoted", lambda s: s.get("championVersion") == "3" and s.get("phase") == "Serving", timeout=240)
        assert promoted3["rollout"]["previousChampion"] == "1"
        cluster.wait_until("version 1's warm copy to be removed", lambda: f"{NAME}-v1" not in deployments(cluster, namespace), timeout=60)
        assert f"{NAME}-v3" in deployments(cluster, namespace)
        fleet.retire("1")
        assert registry.get_model_version_by_alias(model_name, "champion").version == "3"

        # 3. A cold rollback: version 1's Deployment is made again and the route and the alias
        #    move back to it once its pods are ready (KWOK's pods; a fresh model server loads
        #    version 1 from MLflow for the traffic).
        started = time.monotonic()
        rolled = modelship(cluster, "rollback", NAME, "-n", namespace)
        assert rolled.returncode == 0, rolled.stderr
        cluster.wait_until("version 1's Deployment to be made again", lambda: f"{NAME}-v1" in deployments(cluster, namespace), timeout=30, interval=0.2)
        cluster.wait_until("the route to send everything to version 1", lambda: route_weights(cluster, namespace) == {f"{NAME}-v1": 100}, timeout=60, interval=0.2)
        seconds = time.monotonic() - started
        fleet.serve("1", "champion")
        back = wait_status(cluster, namespace, "version 1 to be champion again", lambda s: s.get("championVersion") == "1", timeout=30)
        assert back["phase"] == "Serving" and back["rollout"]["phase"] == "RolledBack" and back["rollout"]["candidate"] == "3"
        assert "redeployed from MLflow" in back["rollout"]["message"], back["rollout"]
        rolled_back = condition(back["conditions"], "Promoted")
        assert rolled_back["reason"] == "RolledBack" and "from version 3 to version 1" in rolled_back["message"], rolled_back
        assert registry.get_model_version_by_alias(model_name, "champion").version == "1"
        assert any(e["reason"] == "RolledBack" and "redeployed from MLflow" in e["message"] for e in events(cluster, namespace))
        # The rolled-back champion is kept for inspection until retireAt (then removed: test_rollout.py).
        assert back["rollout"]["retireAt"]
        sent = dict(traffic.sent)
        cluster.wait_until("requests answered by the redeployed version 1", lambda: traffic.sent.get(f"{NAME}-v1", 0) > sent.get(f"{NAME}-v1", 0) + 20, timeout=30)
        print(f"cold rollback: route on version 1 {seconds:.1f}s after `modelship rollback` (its Deployment made again)")
