"""The execution engine: workflow model, durable runs, the DAG runner and executors.

Layout: `model` (typed workflows built from both YAML forms), `store` (runs, task runs
and run events in SQLite), `runner` (the DAG scheduler), `executors/` (the built-in
shell executor; more come from plugins through `register_executors`), `cli` (`clerk
run`, `clerk runs ...`).
"""
