"""The operator's own Prometheus metrics (the serving metrics live in modelship.monitoring)."""

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Counter("modelship_operator_reconciles_total", "Reconciles of a ModelDeployment, by result.", ["result"])
RECONCILE_SECONDS = Histogram("modelship_operator_reconcile_duration_seconds", "Time of one reconcile.", buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
ERRORS = Counter("modelship_operator_errors_total", "Reconcile errors, by kind.", ["kind"])
TRAININGS_STARTED = Counter("modelship_operator_trainings_started_total", "Training Jobs created.", ["trigger"])
TRAININGS_FINISHED = Counter("modelship_operator_trainings_finished_total", "Training Jobs finished, by outcome.", ["outcome"])
TRAINING_SECONDS = Histogram("modelship_operator_training_duration_seconds", "From Job creation to its recorded result.", buckets=(10, 30, 60, 120, 300, 600, 1800, 3600, 7200))
PROMOTIONS = Counter("modelship_operator_promotions_total", "Versions made champion.")
QUEUE_DEPTH = Gauge("modelship_operator_queue_depth", "ModelDeployments waiting for a reconcile.")
