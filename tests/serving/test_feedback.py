"""The prediction store and ground-truth feedback, for real: a real ``modelship serve`` writes to a
real PostgreSQL (Debian's, ``initdb`` in a temporary directory on 127.0.0.1), feedback joins the
stored predictions and becomes the live-quality series in ``/metrics``; PostgreSQL is stopped
under load and started again while the server keeps answering."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pandas as pd
import pytest
import servingkit
from servers import PostgresServer, wait_until
from servingkit import HOUSING_RECORD, metric, parse_metrics

from modelship.api.names import ENV_PREDICTION_STORE_BUFFER, ENV_PREDICTION_STORE_DSN
from modelship.monitoring import metrics as names

pytestmark = pytest.mark.slow

#: A small buffer, so the outage test overflows it in a few seconds.
BUFFER_ROWS = 400
FEEDBACK = {"monitoring": {"feedback": {"enabled": True, "retention": "24h"}}}


def _serve(model: dict[str, Any], workdir: Any, postgres: PostgresServer, variant: str) -> Any:
    return servingkit.serve(
        workdir, model["name"], model["version"], model["tracking_uri"], workdir / "cache", spec=FEEDBACK, variant=variant,
        extra_env={ENV_PREDICTION_STORE_DSN: postgres.dsn, ENV_PREDICTION_STORE_BUFFER: str(BUFFER_ROWS)},
    )


@pytest.fixture(scope="module")
def housing(housing_model: dict[str, Any], postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[servingkit.Server]:
    with _serve(housing_model, tmp_path_factory.mktemp("store-housing"), postgres, "canary") as server:
        server.wait_ready()
        yield server


@pytest.fixture(scope="module")
def personality(personality_model: dict[str, Any], postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[servingkit.Server]:
    with _serve(personality_model, tmp_path_factory.mktemp("store-personality"), postgres, "champion") as server:
        server.wait_ready()
        yield server


def _stored(postgres: PostgresServer, model: str, record_ids: list[str]) -> dict[str, tuple[Any, ...]]:
    rows = postgres.query(
        "SELECT record_id, request_id, version, variant, inputs, prediction, probabilities FROM modelship_predictions WHERE model = %s AND record_id = ANY(%s)",
        (model, record_ids),
    )
    return {row[0]: row for row in rows}


def _personality_rows(n: int, seed: int) -> list[dict[str, Any]]:
    frame = pd.read_csv(servingkit.PERSONALITY_CSV).dropna().sample(n, random_state=seed)
    return frame.drop(columns=["Personality"]).to_dict(orient="records")


def test_predictions_land_in_the_store(housing: servingkit.Server, postgres: PostgresServer, housing_model: dict[str, Any]) -> None:
    one = housing.client.post("/predict", json=HOUSING_RECORD, headers={"x-request-id": "house-1"})
    assert one.status_code == 200, one.text
    assert one.json()["requestId"] == "house-1" and "recordIds" not in one.json()
    many = housing.client.post("/predict", json=[HOUSING_RECORD, {**HOUSING_RECORD, "median_income": 2.0}])
    body = many.json()
    request_id = many.headers["x-request-id"]
    assert body["requestId"] == request_id and body["recordIds"] == [f"{request_id}-0", f"{request_id}-1"]

    ids = ["house-1", *body["recordIds"]]
    rows = wait_until("stored predictions", lambda: (found := _stored(postgres, "housing", ids)) and len(found) == 3 and found, timeout=20)
    assert rows["house-1"][1:4] == ("house-1", housing_model["version"], "canary")
    assert rows["house-1"][4] == HOUSING_RECORD
    assert rows["house-1"][5] == pytest.approx(one.json()["predictions"][0])
    assert rows[f"{request_id}-1"][1] == request_id and rows[f"{request_id}-1"][4]["median_income"] == 2.0
    assert rows[f"{request_id}-1"][5] == pytest.approx(body["predictions"][1]) and rows[f"{request_id}-1"][6] is None
    samples = parse_metrics(housing.metrics())
    assert metric(samples, names.PREDICTION_STORE_WRITTEN_TOTAL, model="housing") >= 3
    assert metric(samples, names.PREDICTION_STORE_CONNECTED, model="housing") == 1
    described = housing.client.get("/model").json()
    assert described["predictionStore"]["enabled"] and described["predictionStore"]["written"] >= 3
    assert described["feedback"]["retention"] == "24h" and "dsn" not in str(described).lower()


def test_regression_feedback_gives_the_absolute_error_once(housing: servingkit.Server, housing_model: dict[str, Any]) -> None:
    predicted = housing.client.post("/predict", json=[HOUSING_RECORD] * 3).json()
    truth = [p + delta for p, delta in zip(predicted["predictions"], (1000.0, -2500.0, 0.0), strict=True)]
    items = [{"requestId": rid, "value": value} for rid, value in zip(predicted["recordIds"], truth, strict=True)]
    labels = {"model": "housing", "version": housing_model["version"], "variant": "canary"}
    before = parse_metrics(housing.metrics())
    count0 = metric(before, names.PREDICTION_ABSOLUTE_ERROR + "_count", **labels) or 0.0
    sum0 = metric(before, names.PREDICTION_ABSOLUTE_ERROR + "_sum", **labels) or 0.0

    answer = housing.client.post("/feedback", json=items)  # immediately: the store flushes what feedback needs
    assert answer.status_code == 200, answer.text
    assert answer.json()["stored"] == 3 and answer.json()["duplicates"] == 0
    assert [r["absoluteError"] for r in answer.json()["results"]] == pytest.approx([1000.0, 2500.0, 0.0], abs=0.05)
    again = housing.client.post("/feedback", json={"feedback": items[:2]})
    assert again.status_code == 200 and again.json()["stored"] == 0 and again.json()["duplicates"] == 2

    after = parse_metrics(housing.metrics())
    assert metric(after, names.PREDICTION_ABSOLUTE_ERROR + "_count", **labels) - count0 == 3
    assert metric(after, names.PREDICTION_ABSOLUTE_ERROR + "_sum", **labels) - sum0 == pytest.approx(3500.0, abs=0.1)
    assert metric(after, names.PREDICTION_SQUARED_ERROR_TOTAL, **labels) >= 1000.0**2 + 2500.0**2 - 1

    wrong = housing.client.post("/feedback", json={"requestId": predicted["recordIds"][0], "label": "high"})
    assert wrong.status_code == 422
    assert {tuple(d["loc"]) for d in wrong.json()["detail"]} == {("item", "label"), ("item", "value")}


def test_classification_accuracy_in_metrics_matches_the_labels(personality: servingkit.Server, postgres: PostgresServer, personality_model: dict[str, Any]) -> None:
    rows = _personality_rows(40, seed=3)
    answer = personality.client.post("/predict", json=rows)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body["probabilities"][0]) == {"Extrovert", "Introvert"}
    flip = {"Extrovert": "Introvert", "Introvert": "Extrovert"}
    # 30 right, 10 wrong, whatever the model predicted.
    labels = [p if i < 30 else flip[p] for i, p in enumerate(body["predictions"])]
    items = [{"requestId": rid, "label": label} for rid, label in zip(body["recordIds"], labels, strict=True)]
    assert personality.client.post("/feedback", json=items[:25]).status_code == 200
    repeated = personality.client.post("/feedback", json=items)  # 25 again (not counted twice) and 15 new
    assert repeated.status_code == 200 and repeated.json()["stored"] == 15 and repeated.json()["duplicates"] == 25
    assert sum(r["correct"] for r in repeated.json()["results"]) == 30

    samples = parse_metrics(personality.metrics())
    version = personality_model["version"]

    def counted(outcome: str) -> float:
        return sum(
            value for (name, labels_), value in samples.items()
            if name == names.LABELLED_PREDICTIONS_TOTAL and dict(labels_).get("outcome") == outcome and dict(labels_).get("version") == version
        )

    assert counted("correct") == 30 and counted("incorrect") == 10
    assert counted("correct") / (counted("correct") + counted("incorrect")) == pytest.approx(0.75)
    per_class = {c: metric(samples, names.LABELLED_PREDICTIONS_TOTAL, outcome="incorrect", **{"class": c}) for c in ("Extrovert", "Introvert")}
    assert sum(per_class.values()) == 10 and per_class == {c: float(labels[30:].count(c)) for c in per_class}

    feedback = postgres.query("SELECT count(*) FROM modelship_feedback f JOIN modelship_predictions p USING (model, record_id) WHERE model = 'personality'")
    assert feedback[0][0] == 40


def test_export_joins_predictions_and_feedback(personality: servingkit.Server, postgres: PostgresServer, tmp_path: Any) -> None:
    """``modelship predictions export`` (after the accuracy test's 40 labels): CSV with the
    features, the prediction and the label; Parquet of the labelled rows with --target."""
    import os
    import subprocess

    env = {**servingkit.base_env(), "STORE_DSN": postgres.dsn}
    every = tmp_path / "all.csv"
    done = subprocess.run([servingkit.MODELSHIP, "predictions", "export", "--model", "personality", "--dsn-env", "STORE_DSN", "-o", str(every)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    frame = pd.read_csv(every)
    stored = postgres.query("SELECT count(*), count(f.record_id) FROM modelship_predictions p LEFT JOIN modelship_feedback f USING (model, record_id) WHERE model = 'personality'")[0]
    assert len(frame) == stored[0] and frame["label"].notna().sum() == stored[1] >= 40
    assert {"Time_spent_Alone", "prediction", "label", "record_id", "version"} <= set(frame.columns)

    labelled = tmp_path / "labelled.parquet"
    done = subprocess.run(
        [servingkit.MODELSHIP, "predictions", "export", "--model", "personality", "--dsn-env", "STORE_DSN", "-o", str(labelled), "--format", "parquet", "--labelled-only", "--target", "Personality"],
        env=env, capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stderr
    table = pd.read_parquet(labelled)
    assert len(table) == stored[1] and set(table["Personality"]) <= {"Extrovert", "Introvert"} and "label" not in table.columns
    # Predictions and truth joined row by row, as the feedback API judged them.
    truth = dict(postgres.query("SELECT record_id, label FROM modelship_feedback WHERE model = 'personality'"))
    assert all(truth[rid] == label for rid, label in zip(table["record_id"], table["Personality"], strict=True))

    missing = subprocess.run([servingkit.MODELSHIP, "predictions", "export", "--model", "personality", "-o", str(every)], env={k: v for k, v in env.items() if k != "MODELSHIP_PREDICTION_STORE_DSN"}, capture_output=True, text=True)
    assert missing.returncode == 2 and "MODELSHIP_PREDICTION_STORE_DSN is not set" in missing.stderr
    assert os.path.exists(every)


def test_unknown_ids_and_bad_labels_are_refused(personality: servingkit.Server, postgres: PostgresServer) -> None:
    rid = personality.client.post("/predict", json=_personality_rows(1, seed=9)[0]).json()["requestId"]
    unknown = personality.client.post("/feedback", json=[{"requestId": rid, "label": "Introvert"}, {"requestId": "never-predicted", "label": "Introvert"}])
    assert unknown.status_code == 404
    assert "never-predicted" in unknown.json()["message"] and unknown.json()["error"] == "unknown_request_id"
    assert [d["loc"] for d in unknown.json()["detail"]] == [["feedback", 1, "requestId"]]
    # All or nothing: the known id got no feedback either.
    assert postgres.query("SELECT count(*) FROM modelship_feedback WHERE record_id = %s", (rid,))[0][0] == 0

    bad = personality.client.post("/feedback", json=[{"requestId": rid, "label": 1.5}, {"requestId": rid + "x", "label": "Ambivert"}, {"requestId": rid, "value": 1}])
    assert bad.status_code == 422
    problems = {tuple(d["loc"]): d["type"] for d in bad.json()["detail"]}
    assert problems[("feedback", 0, "label")] == "string_type"
    assert problems[("feedback", 1, "label")] == "enum" and "Ambivert" in str(bad.json()["detail"])
    assert problems[("feedback", 2, "requestId")] == "duplicate" and problems[("feedback", 2, "value")] == "extra_forbidden"
    assert personality.client.post("/feedback", content=b"{not json").status_code == 400


def test_schemathesis_finds_no_server_error_in_feedback(personality: servingkit.Server) -> None:
    """Generated bodies for POST /feedback (from the OpenAPI document) never get a 5xx."""
    import subprocess

    command = [
        str(servingkit.BIN / "schemathesis"), "run", f"{personality.url}/docs.json", "--url", personality.url,
        "--include-path", "/feedback", "--checks", "not_a_server_error", "--max-examples", "60", "--no-color",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=servingkit.base_env())
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "1 selected" in done.stdout, done.stdout[-3000:]


def _load(server: servingkit.Server, stop: threading.Event, latencies: list[tuple[float, float, int]]) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                status = client.post("/predict", json=[HOUSING_RECORD] * 4).status_code
            except httpx.HTTPError:
                status = -1
            latencies.append((time.monotonic(), time.perf_counter() - started, status))


def _p50_ms(window: list[tuple[float, float, int]]) -> float:
    return statistics.median(seconds for _, seconds, _ in window) * 1000 if window else float("nan")


def test_postgres_outage_under_load(housing: servingkit.Server, postgres: PostgresServer) -> None:
    """Stopped under load: every request still answers 200, records beyond the buffer are dropped
    and counted, nothing crashes; started again: writing resumes without a restart. Latency is
    printed (a benchmark figure, not asserted)."""
    stop, latencies = threading.Event(), []
    workers = [threading.Thread(target=_load, args=(housing, stop, latencies)) for _ in range(4)]
    for worker in workers:
        worker.start()
    try:
        time.sleep(4)
        marks = {"before": time.monotonic()}
        postgres.stop()
        marks["down"] = time.monotonic()
        wait_until("dropped records", lambda: metric(parse_metrics(housing.metrics()), names.PREDICTION_STORE_DROPPED_TOTAL, model="housing"), timeout=60)
        time.sleep(3)
        assert metric(parse_metrics(housing.metrics()), names.PREDICTION_STORE_CONNECTED, model="housing") == 0
        # Feedback needs the database: it says so (predictions are unaffected).
        refused = housing.client.post("/feedback", json={"requestId": "house-1", "value": 1.0})
        assert refused.status_code == 503 and refused.json()["error"] == "store_unavailable", refused.text
        marks["restart"] = time.monotonic()
        postgres.start()
        marks["up"] = time.monotonic()
        time.sleep(4)
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    assert latencies and all(status == 200 for _, _, status in latencies), {status for _, _, status in latencies}
    assert housing.process.poll() is None
    dropped = metric(parse_metrics(housing.metrics()), names.PREDICTION_STORE_DROPPED_TOTAL, model="housing")
    print(
        f"\nrequests: {len(latencies)}, dropped records: {dropped:.0f}; p50 latency (4 clients, 4 records) "
        f"with the database up {_p50_ms([x for x in latencies if x[0] < marks['before']]):.1f} ms, "
        f"down {_p50_ms([x for x in latencies if marks['down'] < x[0] < marks['restart']]):.1f} ms, "
        f"back {_p50_ms([x for x in latencies if x[0] > marks['up']]):.1f} ms"
    )
    # Writing resumes by itself: the writer reconnects, drains what the full buffer kept, and a
    # prediction made then lands in the store (one made while the buffer is still full is dropped
    # and counted, like any other overflow).
    wait_until("the store to reconnect", lambda: metric(parse_metrics(housing.metrics()), names.PREDICTION_STORE_CONNECTED, model="housing") == 1, timeout=60)
    marks_written = metric(parse_metrics(housing.metrics()), names.PREDICTION_STORE_WRITTEN_TOTAL, model="housing")

    def marker_stored() -> bool:
        request_id = f"after-the-outage-{time.monotonic_ns()}"
        assert housing.client.post("/predict", json=HOUSING_RECORD, headers={"x-request-id": request_id}).status_code == 200
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if _stored(postgres, "housing", [request_id]):
                return True
            time.sleep(0.5)
        return False

    wait_until("the store to write again", marker_stored, timeout=60, interval=0)
    assert metric(parse_metrics(housing.metrics()), names.PREDICTION_STORE_WRITTEN_TOTAL, model="housing") > marks_written
    samples = parse_metrics(housing.metrics())
    assert metric(samples, names.PREDICTION_STORE_CONNECTED, model="housing") == 1
    assert housing.log().count("buffer full") == 1, "the overflow warning must not repeat per request"
