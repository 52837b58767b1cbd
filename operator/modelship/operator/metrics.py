"""The operator's own Prometheus metrics; their names live with every other Modelship metric
name in modelship.monitoring.metrics."""

from prometheus_client import Counter, Gauge, Histogram

from modelship.monitoring import metrics as names

RECONCILES = Counter(names.OPERATOR_RECONCILES_TOTAL, "Reconciles of a ModelDeployment, by result.", ["result"])
RECONCILE_SECONDS = Histogram(names.OPERATOR_RECONCILE_SECONDS, "Time of one reconcile.", buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
ERRORS = Counter(names.OPERATOR_ERRORS_TOTAL, "Reconcile errors, by kind.", ["kind"])
TRAININGS_STARTED = Counter(names.OPERATOR_TRAININGS_STARTED_TOTAL, "Training Jobs created.", ["trigger"])
TRAININGS_FINISHED = Counter(names.OPERATOR_TRAININGS_FINISHED_TOTAL, "Training Jobs finished, by outcome.", ["outcome"])
TRAINING_SECONDS = Histogram(names.OPERATOR_TRAINING_SECONDS, "From Job creation to its recorded result.", buckets=(10, 30, 60, 120, 300, 600, 1800, 3600, 7200))
PROMOTIONS = Counter(names.OPERATOR_PROMOTIONS_TOTAL, "Versions made champion.")
QUEUE_DEPTH = Gauge(names.OPERATOR_QUEUE_DEPTH, "ModelDeployments waiting for a reconcile.")
ALERTS = Counter(names.OPERATOR_ALERTS_TOTAL, "Alerts received on the Alertmanager webhook, by what became of them.", ["result"])
ALERT_WEBHOOK_REQUESTS = Counter(names.OPERATOR_ALERT_WEBHOOK_REQUESTS_TOTAL, "Calls of the Alertmanager webhook, by HTTP status.", ["code"])
