"""
State shared by every worker process, behind one interface (:class:`~.base.SharedStore`).

Each Airflow task try is a new process, so anything that must be coordinated (quota pacing, circuit
breaker state) lives in a store every worker reaches: :class:`~.memory.MemoryStore` (one process:
tests and tools), :class:`~.sql.SqlStore` (tables in the warehouse, through an Engine) and
:class:`~.redis.RedisStore`. :class:`~.fallback.FallbackStore` decides, in one place, what happens
when the primary store stops answering. Modelled on pybreaker's ``CircuitMemoryStorage`` /
``CircuitRedisStorage`` split.
"""
