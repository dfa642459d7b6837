"""Failure drills: the catalogue, the fault proxy, the runner and the report (``resilient-etl drill``)."""
