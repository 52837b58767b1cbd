"""Serving benchmark: the Modelship model server vs a plain FastAPI app on the same model.

    BENTOML_DO_NOT_TRACK=true .venv/bin/python benchmarks/bench_serving.py [--duration 12]

1. Trains the California-housing XGBoost model (600 trees, depth 7) with the real training
   entrypoint (``modelship train``) into a temporary sqlite MLflow backend.
2. Starts ``modelship serve`` (drift off) and a plain FastAPI + uvicorn app that calls
   ``pipeline.predict(pd.DataFrame([record]))`` once per request, both on 127.0.0.1.
3. Drives each with the same load from a separate process — ``wrk`` when installed (Debian
   package ``wrk``), else an asyncio + httpx generator in a child process — at concurrency 1
   and 32 for a fixed duration, one record per request, and prints requests/s, p50 and p99.
   The runs are interleaved over ``--rounds`` rounds and medians reported.
4. Holds concurrency 32 on the model server for ``--soak`` seconds in 10 s slices and prints each
   slice's p99 and the worker's RSS: a per-request leak (BentoML's request timeout once left a
   timer per request on the loop) shows as a p99 and an RSS that climb slice after slice.
5. With the prediction store on (a real PostgreSQL, ``initdb`` in a temporary directory on
   127.0.0.1): the server at concurrency 32 with the store off vs on, interleaved, and the rows
   the store wrote per second (``--store-only`` runs just this part).
6. Times one drift evaluation (5,000 rows × 9 features, Evidently) and the server at
   concurrency 32 with drift on (5,000-row window, evaluated every 2 s, in the default child
   process and, for comparison, in a thread of the server) vs off.

Figures only, no asserts: the machine is shared, so the load average is printed with them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests" / "serving"), str(REPO / "tests" / "support")]

import pandas as pd  # noqa: E402
import servingkit  # noqa: E402
from servers import PostgresServer, wait_http  # noqa: E402
from servingkit import HOUSING_RECORD  # noqa: E402

TREES, DEPTH = 600, 7


# --- the plain baseline ------------------------------------------------------------------


def plain_app_main(model_dir: str, port: int) -> None:
    """A plain FastAPI app: one ``pipeline.predict`` on a one-row DataFrame per request."""
    import mlflow.sklearn
    import pandas as pd
    import uvicorn
    from fastapi import FastAPI

    pipeline = mlflow.sklearn.load_model(model_dir)
    app = FastAPI()

    @app.post("/predict")
    def predict(record: dict[str, Any]) -> dict[str, Any]:
        return {"predictions": pipeline.predict(pd.DataFrame([record])).tolist()}

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# --- load generation ---------------------------------------------------------------------


def run_wrk(url: str, concurrency: int, duration: int, body: str) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\nwrk.headers["Content-Type"] = "application/json"\n')
    threads = 1 if concurrency == 1 else 2
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{duration}s", "--latency", "-s", script.name, url],
        capture_output=True, text=True, check=True,
    ).stdout
    os.unlink(script.name)

    def ms(label: str) -> float:
        match = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not match:
            return float("nan")
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    return {"rps": rps, "p50": ms("50%"), "p99": ms("99%"), "non2xx": float(non2xx.group(1)) if non2xx else 0.0, "socket_errors": errors.group(0) if errors else ""}  # type: ignore[dict-item]


def httpx_load_main(url: str, concurrency: int, duration: float, body: str) -> None:
    """Child process: closed-loop load with ``concurrency`` connections; prints JSON figures."""
    import httpx

    async def main() -> None:
        latencies: list[float] = []
        failures = 0
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(limits=limits, timeout=30) as client:
            end = time.perf_counter() + duration

            async def worker() -> None:
                nonlocal failures
                while time.perf_counter() < end:
                    started = time.perf_counter()
                    response = await client.post(url, content=body, headers={"content-type": "application/json"})
                    latencies.append(time.perf_counter() - started)
                    failures += response.status_code != 200

            await asyncio.gather(*(worker() for _ in range(concurrency)))
        latencies.sort()
        n = len(latencies)
        print(json.dumps({"rps": n / duration, "p50": latencies[n // 2] * 1000, "p99": latencies[min(n - 1, int(n * 0.99))] * 1000, "non2xx": failures}))

    asyncio.run(main())


def load(url: str, concurrency: int, duration: int, body: str) -> dict[str, float]:
    if shutil.which("wrk"):
        return run_wrk(url, concurrency, duration, body)
    out = subprocess.run([sys.executable, __file__, "--httpx-load", url, str(concurrency), str(duration), body], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- helpers -----------------------------------------------------------------------------


def loadavg() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def drift_cost(reference_path: Path, schema_categorical: list[str]) -> tuple[float, float]:
    """Seconds of one drift evaluation of 5,000 rows × 9 features (first run, then warm)."""
    import pandas as pd

    from modelship.monitoring.drift import DriftSettings, compute_drift

    reference = pd.read_parquet(reference_path)
    current = pd.read_csv(servingkit.HOUSING_CSV)[list(reference.columns)].sample(5000, random_state=11)
    times = []
    for _ in range(3):
        started = time.perf_counter()
        compute_drift(current, reference, DriftSettings(), schema_categorical)
        times.append(time.perf_counter() - started)
    return times[0], min(times[1:])


def batch_totals(server: Any) -> tuple[float, float]:
    """(rows, model calls) so far, from the server's batch-size histogram."""
    samples = servingkit.parse_metrics(server.metrics())
    return servingkit.metric(samples, "modelship_batch_size_sum") or 0.0, servingkit.metric(samples, "modelship_batch_size_count") or 0.0


def worker_rss_mib(pid: int) -> float:
    """RSS of the BentoML worker processes under ``modelship serve`` (the HTTP worker holds the model)."""
    import psutil

    children = psutil.Process(pid).children(recursive=True)
    return sum(child.memory_info().rss for child in children if "_bentoml_impl.worker" in " ".join(child.cmdline())) / 2**20


def row(name: str, figures: dict[str, float]) -> str:
    extra = f"  (non-2xx {int(figures['non2xx'])})" if figures.get("non2xx") else ""
    return f"| {name} | {figures['rps']:.0f} | {figures['p50']:.2f} | {figures['p99']:.2f} |{extra}"


def plain_comparison(stack: contextlib.ExitStack, workdir: Path, server: Any, measure: Any, batched: dict[str, list[float]], body: str, args: Any) -> None:
    """The model server vs the plain FastAPI app, interleaved rounds at concurrency 1 and 32."""
    cache_model = next((workdir / "cache").glob("*/*/model"))
    port = servingkit.free_port()
    plain = subprocess.Popen([sys.executable, __file__, "--plain-app", str(cache_model), str(port)], env=servingkit.base_env(), start_new_session=True)
    stack.callback(servingkit.stop_process, plain)
    wait_http(f"http://127.0.0.1:{port}/health", 120, plain)
    load(f"http://127.0.0.1:{port}/predict", 4, 2, body)  # warm up
    # Interleaved rounds: the machine is shared, so both servers see the same background load.
    for _ in range(args.rounds):
        for concurrency in (1, 32):
            measure(f"modelship c={concurrency}", f"{server.url}/predict", concurrency, server)
            measure(f"plain FastAPI c={concurrency}", f"http://127.0.0.1:{port}/predict", concurrency)
    for name, (rows, calls) in batched.items():
        print(f"{name}: mean rows per model call {rows / max(calls, 1):.1f}", flush=True)
    servingkit.stop_process(plain, 20)


STORE_OFF = "modelship c=32 store off"
STORE_ON = "modelship c=32 store on"


def store_comparison(stack: contextlib.ExitStack, workdir: Path, version: str, tracking_uri: str, server: Any, off: dict[str, Any], measure: Any, args: Any) -> None:
    """The same server with the prediction store off and on (a real PostgreSQL), interleaved."""
    from modelship.api.names import ENV_PREDICTION_STORE_DSN

    postgres = PostgresServer().start()
    stack.callback(postgres.remove)
    spec = {**off, "monitoring": {**off["monitoring"], "feedback": {"enabled": True}}}
    stored = stack.enter_context(servingkit.serve(workdir / "serve-store", "housing-bench", version, tracking_uri, workdir / "cache", spec=spec, extra_env={ENV_PREDICTION_STORE_DSN: postgres.dsn}))
    stored.wait_ready(timeout=300)
    load(f"{stored.url}/predict", 4, 2, json.dumps(HOUSING_RECORD))  # warm up

    def store_counts() -> tuple[float, float]:
        samples = servingkit.parse_metrics(stored.metrics())
        return (servingkit.metric(samples, "modelship_prediction_store_written_total") or 0.0, servingkit.metric(samples, "modelship_prediction_store_dropped_total") or 0.0)

    for _ in range(args.rounds):
        measure(STORE_OFF, f"{server.url}/predict", 32)
        written, dropped = store_counts()
        started = time.perf_counter()
        measure(STORE_ON, f"{stored.url}/predict", 32)
        time.sleep(1)  # the writer's last batch
        elapsed = time.perf_counter() - started
        written_after, dropped_after = store_counts()
        print(f"  store: {(written_after - written) / elapsed:.0f} rows written/s over the run, {dropped_after - dropped:.0f} dropped", flush=True)
    rows = postgres.query("SELECT count(*) FROM modelship_predictions")[0][0]
    print(f"prediction store: {rows} rows in PostgreSQL", flush=True)
    writer_capacity(postgres)


def writer_capacity(postgres: PostgresServer, rows: int = 100_000) -> None:
    """What the store's writer sustains alone, whatever the HTTP load: ``rows`` housing records
    recorded 32 at a time, then flushed; the request path's cost (``record``) and the writer's
    CPU time per row (encoding, psycopg, the event loop), and rows written per second."""
    from modelship.serving.store import PredictionStore, StoreSettings

    async def run() -> tuple[float, float, float]:
        store = PredictionStore(StoreSettings(dsn=postgres.dsn, model="capacity", buffer_rows=rows + 64))
        store.start()
        await store.flush()
        batch = [(f"r{i}", f"r{i}", time.time(), "1", "champion", dict(HOUSING_RECORD), 452600.0, None) for i in range(32)]
        cpu, wall = time.process_time(), time.perf_counter()
        for start in range(0, rows, 32):
            store.record([(f"{start}-{i}", *row[1:]) for i, row in enumerate(batch)])
        record_seconds = time.perf_counter() - wall
        await store.flush(timeout=600)
        elapsed, cpu_used = time.perf_counter() - wall, time.process_time() - cpu
        await store.close()
        return record_seconds, elapsed, cpu_used

    record_seconds, elapsed, cpu_used = asyncio.run(run())
    print(
        f"prediction store writer alone: {rows} rows in {elapsed:.1f}s = {rows / elapsed:,.0f} rows written/s; "
        f"record() {record_seconds / rows * 1e6:.2f} us/row on the request path; server-process CPU {cpu_used / rows * 1e6:.1f} us/row; load {loadavg()}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=12, help="Seconds per load run.")
    parser.add_argument("--workdir", type=Path, default=None, help="Keep MLflow data and logs here (default: a temp dir).")
    parser.add_argument("--rounds", type=int, default=2, help="Interleaved rounds; medians are reported.")
    parser.add_argument("--skip-drift", action="store_true", help="Skip the drift on/off comparison.")
    parser.add_argument("--soak", type=int, default=60, help="Seconds of sustained concurrency 32 (10 s slices; 0 skips).")
    parser.add_argument("--skip-store", action="store_true", help="Skip the prediction store on/off comparison.")
    parser.add_argument("--store-only", action="store_true", help="Only the prediction store on/off comparison.")
    args = parser.parse_args()
    os.environ["BENTOML_DO_NOT_TRACK"] = "true"

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-serving-"))
    workdir.mkdir(parents=True, exist_ok=True)
    tracking_uri = f"sqlite:///{workdir / 'mlflow.db'}"
    print(f"workdir {workdir}; load average {loadavg()}; {os.cpu_count()} CPUs; load generator {'wrk' if shutil.which('wrk') else 'httpx (child process)'}", flush=True)

    started = time.perf_counter()
    result = servingkit.train(workdir, tracking_uri, "housing-bench", servingkit.housing_spec(trees=TREES, depth=DEPTH))
    print(f"trained with modelship train: version {result['version']}, r2 {result['metrics']['r2']:.3f}, {time.perf_counter() - started:.1f}s", flush=True)
    body = json.dumps(HOUSING_RECORD)
    runs: dict[str, list[dict[str, float]]] = {}

    batched: dict[str, list[float]] = {}  # (rows, calls) of the modelship runs, per run name

    def measure(name: str, url: str, concurrency: int, server: Any = None) -> None:
        before = batch_totals(server) if server is not None else None
        figures = load(url, concurrency, args.duration, body)
        runs.setdefault(name, []).append(figures)
        if server is not None:
            after = batch_totals(server)
            totals = batched.setdefault(name, [0.0, 0.0])
            totals[0] += after[0] - before[0]
            totals[1] += after[1] - before[1]
        print(row(name, figures), f" load {loadavg()}", flush=True)

    off = {"monitoring": {"drift": {"enabled": False}}}
    on = {"monitoring": {"drift": {"enabled": True, "windowSize": 5000, "minRows": 1000, "interval": "2s"}}}
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(servingkit.serve(workdir / "serve", "housing-bench", result["version"], tracking_uri, workdir / "cache", spec=off))
        server.wait_ready(timeout=300)
        info = server.client.get("/model").json()
        print(f"model server ready: predictor {info['predictor']}, batching {info['batching']}", flush=True)
        load(f"{server.url}/predict", 4, 2, body)  # warm up
        if not args.store_only:
            plain_comparison(stack, workdir, server, measure, batched, body, args)

        if not args.skip_store:
            store_comparison(stack, workdir, result["version"], tracking_uri, server, off, measure, args)

        if args.soak and not args.store_only:
            print(f"sustained concurrency 32 for {args.soak}s, 10 s slices (p99 and worker RSS should stay flat):", flush=True)
            for index in range(max(1, args.soak // 10)):
                figures = load(f"{server.url}/predict", 32, 10, body)
                print(f"| slice {index + 1} | {figures['rps']:.0f} | {figures['p50']:.2f} | {figures['p99']:.2f} | worker RSS {worker_rss_mib(server.process.pid):.0f} MiB |  load {loadavg()}", flush=True)

        if not args.store_only:
            first, warm = drift_cost(next((workdir / "cache").glob("*/*/reference.parquet")), ["ocean_proximity"])
            print(f"drift evaluation, 5,000 rows x 9 features, in-process: {first:.2f}s first, {warm:.2f}s warm", flush=True)

        if not args.skip_drift and not args.store_only:
            sample = pd.read_csv(servingkit.HOUSING_CSV).drop(columns=["median_house_value"]).dropna().sample(5000, random_state=3)
            drifting = {}
            for executor in ("process", "thread"):
                srv = stack.enter_context(
                    servingkit.serve(workdir / f"serve-drift-{executor}", "housing-bench", result["version"], tracking_uri, workdir / "cache", spec=on, extra_env={"MODELSHIP_DRIFT_EXECUTOR": executor})
                )
                srv.wait_ready(timeout=300)
                srv.client.post("/predict/batch", json=sample.to_dict(orient="records"))
                drifting[executor] = srv
            time.sleep(10)  # the drift evaluators start and evaluate the full window once
            for _ in range(args.rounds):
                measure("modelship c=32 drift off", f"{server.url}/predict", 32)
                for executor, srv in drifting.items():
                    measure(f"modelship c=32 drift on ({executor})", f"{srv.url}/predict", 32)
            for executor, srv in drifting.items():
                samples = servingkit.parse_metrics(srv.metrics())
                count = servingkit.metric(samples, "modelship_drift_evaluation_seconds_count") or 0
                total = servingkit.metric(samples, "modelship_drift_evaluation_seconds_sum") or 0
                print(f"drift ({executor}): {count:.0f} evaluations of the 5,000-row window, mean {total / max(count, 1):.2f}s each", flush=True)

    print()
    print(f"Medians over {args.rounds} interleaved round(s) of {args.duration}s, one record per request:")
    print()
    print("| run | requests/s | p50 ms | p99 ms |")
    print("|---|---|---|---|")
    medians = {name: {key: statistics.median(r[key] for r in results) for key in ("rps", "p50", "p99", "non2xx")} for name, results in runs.items()}
    for name, figures in medians.items():
        print(row(name, figures))
    if "plain FastAPI c=32" in medians:
        ratio = medians["modelship c=32"]["rps"] / medians["plain FastAPI c=32"]["rps"]
        print(f"\nmodelship / plain requests/s at concurrency 32: {ratio:.1f}x")
    if STORE_ON in medians:
        on, off = medians[STORE_ON], medians[STORE_OFF]
        print(f"\nprediction store on / off at concurrency 32: requests/s {on['rps'] / off['rps']:.0%} (target >= 90%), p99 {on['p99'] / off['p99'] - 1:+.0%} (target <= +10%)")
    print(f"load average at the end {loadavg()}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--plain-app":
        plain_app_main(sys.argv[2], int(sys.argv[3]))
    elif len(sys.argv) > 1 and sys.argv[1] == "--httpx-load":
        httpx_load_main(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5])
    else:
        main()
