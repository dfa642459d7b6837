"""The command groups of ``resilient-etl`` beyond the core checks: recovery and disaster recovery."""
