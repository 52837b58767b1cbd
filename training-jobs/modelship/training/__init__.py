"""The training Job: load, validate, split, train, search, evaluate, log to MLflow, register,
save the reference sample and write the result (``modelship train``).

Modules by job: ``datasets`` (loading by URI), ``validation`` (checks and the report),
``preprocessing`` (the pipeline steps the model server unpickles), ``estimators``, ``search``,
``evaluation`` (split, metrics, quality gate), ``registry`` (MLflow), ``entrypoint``
(orchestration and the result) and ``cli`` (the typer command)."""
