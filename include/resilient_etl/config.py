"""
The validated configuration: ``config/resilience.yaml`` (or ``$RESILIENT_ETL_CONFIG``).

Every tolerance, folder and batch size lives in that one file. A bad value raises :class:`ConfigError`
naming the field path and the offending value, so the DAG fails to import with that message and
``resilient-etl config check`` prints it.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

from resilient_etl.errors import Category, ConfigError, Severity

CONFIG_ENV = "RESILIENT_ETL_CONFIG"
ENVIRONMENT_ENV = "RESILIENT_ETL_ENV"  # dev | test | prod: merges config/resilience.<env>.yaml over the base
OVERRIDE_PREFIX = "RESILIENT_ETL__"  # RESILIENT_ETL__LOAD__BATCH_SIZE=1000 sets load.batch_size
PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG_PATH = PROJECT_ROOT / "config" / "resilience.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PathsConfig(_Strict):
    """Folders; relative paths resolve against the directory holding the config file."""

    landing: Path
    archive: Path
    rejected: Path
    # Alerts sent while the incident store (the warehouse) was down wait here to be recorded.
    # Default: alert-spool beside the archive folder.
    alert_spool: Path | None = None

    @property
    def spool(self) -> Path:
        """Return the folder of alerts not yet recorded as incidents."""
        return self.alert_spool or self.archive.parent / "alert-spool"


class LoadConfig(_Strict):
    batch_size: int = Field(500, ge=1, le=100_000)
    chunk_size: int = Field(100, ge=1, le=10_000)
    max_quarantine_share: float = Field(0.05, ge=0, le=1)  # of a batch rejected by the database


class ApiConfig(_Strict):
    conn_id: str = Field(min_length=1)
    timeout_seconds: float = Field(10.0, gt=0, le=300)


class CompaniesHouseApiConfig(ApiConfig):
    pace: bool = True  # spread requests over the quota window from the X-Ratelimit-* headers


class PostcodesApiConfig(ApiConfig):
    bulk_size: int = Field(100, ge=1, le=100)  # postcodes.io refuses more than 100 per request


class ApisConfig(_Strict):
    postcodes_io: PostcodesApiConfig
    companies_house: CompaniesHouseApiConfig


class WarehouseConfig(_Strict):
    conn_id: str = Field("warehouse_default", min_length=1)


class DagConfig(_Strict):
    owner: str = Field(min_length=1)
    schedule: str | None = None
    tags: list[str] = Field(min_length=1)
    retries: int = Field(2, ge=0, le=20)
    retry_delay_seconds: float = Field(30, ge=0)
    retry_exponential_backoff: float = Field(2.0, ge=0)
    max_retry_delay_seconds: float = Field(600, gt=0)
    execution_timeout_minutes: float = Field(60, gt=0)


class RetryPolicyConfig(_Strict):
    """One dependency's retry budget (see :class:`resilient_etl.resilience.retry.RetryPolicy`)."""

    max_attempts: int = Field(5, ge=1, le=50)
    initial_wait_seconds: float = Field(0.5, ge=0, le=600)
    multiplier: float = Field(2.0, ge=1, le=10)
    max_wait_seconds: float = Field(30, ge=0, le=3600)
    max_elapsed_seconds: float = Field(120, gt=0, le=86_400)
    max_server_wait_seconds: float = Field(330, ge=0, le=3600)


class RetryConfig(_Strict):
    database: RetryPolicyConfig = RetryPolicyConfig()
    postcodes_io: RetryPolicyConfig = RetryPolicyConfig()
    companies_house: RetryPolicyConfig = RetryPolicyConfig()

    def policy(self, dependency: str) -> Any:
        """Return the :class:`RetryPolicy` for ``database``, ``postcodes_io`` or ``companies_house``."""
        from resilient_etl.resilience.retry import RetryPolicy

        c: RetryPolicyConfig = getattr(self, dependency)
        return RetryPolicy(
            dependency=dependency,
            max_attempts=c.max_attempts,
            initial_wait=c.initial_wait_seconds,
            multiplier=c.multiplier,
            max_wait=c.max_wait_seconds,
            max_elapsed=c.max_elapsed_seconds,
            max_server_wait=c.max_server_wait_seconds,
        )


class SharedStateConfig(_Strict):
    """Where state shared by every worker lives (quota pacing, breaker state)."""

    store: Literal["auto", "redis", "sql"] = "auto"  # auto: Redis when the connection exists, else SQL
    redis_conn_id: str = Field("breaker_store", min_length=1)


class BreakerConfig(_Strict):
    """One API's circuit breaker (see :class:`resilient_etl.resilience.breaker_policy.BreakerPolicy`)."""

    fail_max: int = Field(5, ge=1, le=1000)
    failure_rate_threshold: float = Field(0.5, gt=0, le=1)
    minimum_calls: int = Field(10, ge=1, le=100_000)
    window_seconds: float = Field(60, ge=1, le=86_400)
    reset_timeout_seconds: float = Field(30, gt=0, le=86_400)
    success_threshold: int = Field(1, ge=1, le=100)


class BreakersConfig(_Strict):
    postcodes_io: BreakerConfig = BreakerConfig()
    companies_house: BreakerConfig = BreakerConfig()

    def policy(self, name: str) -> Any:
        """Return the :class:`BreakerPolicy` for ``postcodes_io`` or ``companies_house``."""
        from resilient_etl.resilience.breaker_policy import BreakerPolicy

        c: BreakerConfig = getattr(self, name)
        return BreakerPolicy(
            name=name,
            fail_max=c.fail_max,
            failure_rate=c.failure_rate_threshold,
            minimum_calls=c.minimum_calls,
            window_seconds=c.window_seconds,
            reset_timeout=c.reset_timeout_seconds,
            success_threshold=c.success_threshold,
        )


class FallbackConfig(_Strict):
    """What an open breaker may cost a run before the run fails."""

    max_non_live_share: float = Field(0.25, ge=0, le=1)  # of a run's lookups answered by a fallback
    backlog_batch: int = Field(500, ge=0, le=100_000)  # pending suppliers re-enriched per run
    postcode_reference: Path | None = None  # the reference extract; None: the one shipped with the package


class Threshold(_Strict):
    """A data-quality rule's limits, as shares of a file's rows: above ``warn`` warns, above ``fail`` fails."""

    warn: float = Field(ge=0, le=1)
    fail: float = Field(ge=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> Threshold:
        if self.warn > self.fail:
            raise ValueError(f"warn ({self.warn}) must not be above fail ({self.fail})")
        return self


class QualityConfig(_Strict):
    """Data-quality thresholds per rule (see :mod:`resilient_etl.quality`)."""

    invalid_postcode: Threshold = Threshold(warn=0.01, fail=0.05)
    invalid_company_number: Threshold = Threshold(warn=0.01, fail=0.05)
    missing_fields: Threshold = Threshold(warn=0.01, fail=0.05)
    duplicate_supplier_id: Threshold = Threshold(warn=0.0, fail=0.02)
    unparseable_values: Threshold = Threshold(warn=0.01, fail=0.05)
    unknown_columns: Threshold = Threshold(warn=0.0, fail=0.5)  # share of the contract's columns


class MaintenanceConfig(_Strict):
    """Housekeeping of the warehouse's working tables (DAG ``warehouse_maintenance``)."""

    schedule: str | None = "@daily"
    retention_days: int = Field(30, ge=1, le=3650)


class MatrixEntryConfig(_Strict):
    """One category's row of the classification matrix."""

    severity: Severity
    action: str = Field(min_length=1)  # the recommended action, in the alert
    cause: str = Field(min_length=1)  # the likely cause, in the alert
    runbook: str = Field(min_length=1, pattern=r"^[a-z0-9-]+$")  # section anchor in the runbook


class _ClassificationBase(_Strict):
    def entries(self) -> dict[str, MatrixEntryConfig]:
        """Return the matrix as category value -> entry."""
        return {c.value: getattr(self, c.value) for c in Category}


# One required field per category: a category added to the taxonomy without a row fails the config.
ClassificationConfig = create_model(
    "ClassificationConfig",
    __base__=_ClassificationBase,
    **{c.value: (MatrixEntryConfig, ...) for c in Category},
)


class Person(_Strict):
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    slack: str = Field(min_length=1)  # the handle mentioned in Slack alerts


class OnCallConfig(_Strict):
    """A rotation: each tier's list is walked one person per ``rotation_days`` from ``rotation_start``."""

    rotation_start: dt.date
    rotation_days: int = Field(7, ge=1, le=366)
    people: dict[str, Person]
    primary: list[str] = Field(min_length=1)
    secondary: list[str] = Field(min_length=1)
    lead: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _known_people(self) -> OnCallConfig:
        for tier in ("primary", "secondary", "lead"):
            for name in getattr(self, tier):
                if name not in self.people:
                    raise ValueError(f"{tier}: {name!r} is not in people")
        return self


class EscalationStep(_Strict):
    after_minutes: float = Field(ge=0, le=10_080)  # since the incident opened, unacknowledged
    tier: Literal["primary", "secondary", "lead"]


class SeverityRoute(_Strict):
    """Who hears of a failure of one severity, how, and how it escalates while unacknowledged."""

    channels: list[Literal["email", "slack"]] = []
    notify_retries: bool = False  # a retry is always logged; notified only when this is true
    escalation: list[EscalationStep] = []

    @model_validator(mode="after")
    def _ordered(self) -> SeverityRoute:
        minutes = [s.after_minutes for s in self.escalation]
        if minutes != sorted(minutes):
            raise ValueError("escalation steps must be in after_minutes order")
        return self


class RoutesConfig(_Strict):
    SEV1: SeverityRoute
    SEV2: SeverityRoute
    SEV3: SeverityRoute
    SEV4: SeverityRoute


class AlertsConfig(_Strict):
    """Alert channels and the on-call rotation (see :mod:`resilient_etl.alerting`)."""

    email_conn_id: str = Field("smtp_default", min_length=1)
    slack_conn_id: str = Field("slack_alerts", min_length=1)
    from_email: str = Field("resilient-etl@localhost", pattern=r"^[^@\s]+@[^@\s]+$")
    ui_base_url: str = Field("http://localhost:8080", pattern=r"^https?://")
    runbook_url: str = Field(min_length=1)  # the runbook document; a category's section is appended as #anchor
    escalation_schedule: str | None = "*/5 * * * *"  # DAG incident_escalation
    routes: RoutesConfig
    oncall: OnCallConfig


class DeadlineTier(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    after_minutes: float = Field(gt=0, le=10_080)  # since the run was queued
    severity: Severity


class DeadlinesConfig(_Strict):
    """Deadline Alerts on company_enrichment runs, and soft per-task deadlines (minutes)."""

    # `airflow dags test` crashes on DAGs with Deadline Alerts (Airflow 3.3.2): the demo and the
    # dag.test-based tests turn them off; the scheduler wires them everywhere else.
    dag_run_alerts: bool = True
    dag_run: list[DeadlineTier] = []
    tasks: dict[str, float] = {}

    @model_validator(mode="after")
    def _valid(self) -> DeadlinesConfig:
        names = [t.name for t in self.dag_run]
        if len(set(names)) != len(names):
            raise ValueError(f"dag_run deadline names must be unique: {names}")
        for task, minutes in self.tasks.items():
            if not 0 < minutes <= 10_080:
                raise ValueError(f"tasks.{task}: {minutes} minutes is outside (0, 10080]")
        return self


class Limits(_Strict):
    """A measurement's thresholds: beyond ``warn`` warns, beyond ``fail`` fails."""

    warn: float = Field(ge=0)
    fail: float = Field(ge=0)


class HealthConfig(_Strict):
    """Automated health checks (``resilient-etl health``, DAG ``pipeline_health``, ``/resilience/health``)."""

    timeout_seconds: float = Field(5, gt=0, le=120)  # per check; a check that hangs fails at this
    schedule: str | None = "*/10 * * * *"
    airflow_api_url: str = Field("http://localhost:8080", pattern=r"^https?://")
    latency_ms: Limits = Limits(warn=1000, fail=4000)  # above: warn / fail
    free_space_mb: Limits = Limits(warn=1024, fail=256)  # below: warn / fail
    rate_limit_headroom: Limits = Limits(warn=0.2, fail=0.05)  # share of the quota left, below: warn / fail

    @model_validator(mode="after")
    def _ordered(self) -> HealthConfig:
        if self.latency_ms.warn > self.latency_ms.fail:
            raise ValueError("latency_ms: warn must not be above fail")
        for name in ("free_space_mb", "rate_limit_headroom"):
            limits = getattr(self, name)
            if limits.warn < limits.fail:
                raise ValueError(f"{name}: warn must not be below fail (less is worse)")
        return self


class ResilienceConfig(_Strict):
    """The whole file."""

    paths: PathsConfig
    load: LoadConfig = LoadConfig()
    apis: ApisConfig
    warehouse: WarehouseConfig = WarehouseConfig()
    retry: RetryConfig = RetryConfig()
    shared_state: SharedStateConfig = SharedStateConfig()
    breakers: BreakersConfig = BreakersConfig()
    fallback: FallbackConfig = FallbackConfig()
    maintenance: MaintenanceConfig = MaintenanceConfig()
    quality: QualityConfig = QualityConfig()
    dag: DagConfig
    classification: ClassificationConfig  # type: ignore[valid-type]
    alerts: AlertsConfig
    deadlines: DeadlinesConfig = DeadlinesConfig()
    health: HealthConfig = HealthConfig()


def _describe(errors: list[dict[str, Any]]) -> tuple[str, str, Any]:
    lines = []
    for err in errors:
        field = ".".join(str(p) for p in err["loc"]) or "<root>"
        value = err.get("input")
        lines.append(f"{field}: {err['msg']} (got {value!r})")
    first = errors[0]
    return "; ".join(lines), ".".join(str(p) for p in first["loc"]), first.get("input")


def config_path() -> Path:
    """Return the config file in force: ``$RESILIENT_ETL_CONFIG`` or the project's ``config/resilience.yaml``."""
    return Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH)


def parse_config(data: Any, *, base_dir: Path, source: str = "<config>") -> ResilienceConfig:
    """
    Validate already-loaded config data and resolve its relative paths.

    :param data: the YAML document as Python objects
    :param base_dir: the directory relative folder paths are resolved against
    :param source: a name for the data, used in error messages
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping, got {type(data).__name__}", field="<root>")
    try:
        cfg = ResilienceConfig.model_validate(data)
    except ValidationError as exc:
        message, field, value = _describe(exc.errors())
        raise ConfigError(f"{source}: invalid configuration: {message}", field=field, value=value) from None
    resolved = {name: (base_dir / p).resolve() for name, p in cfg.paths.model_dump().items() if p is not None}
    update: dict[str, Any] = {"paths": PathsConfig(**resolved)}
    reference = cfg.fallback.postcode_reference
    if reference is not None:
        reference = (base_dir / reference).resolve()
        if not reference.is_file():
            raise ConfigError(
                f"{source}: invalid configuration: fallback.postcode_reference: no such file (got {str(reference)!r})",
                field="fallback.postcode_reference",
                value=str(reference),
            )
        update["fallback"] = cfg.fallback.model_copy(update={"postcode_reference": reference})
    return cfg.model_copy(update=update)


def _read_yaml(file: Path) -> Any:
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {file}: {exc.strerror}", field="<file>") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML: {exc}", field="<file>") from None


def deep_merge(base: Any, overlay: Any) -> Any:
    """Return ``base`` with ``overlay`` merged in: mappings key by key, anything else replaced."""
    if isinstance(base, dict) and isinstance(overlay, dict):
        return {**base, **{k: deep_merge(base.get(k), v) for k, v in overlay.items()}}
    return overlay


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """
    Return the overrides given as ``RESILIENT_ETL__SECTION__KEY=value`` variables (a pure function).

    The path is lower-cased; the value is read as YAML (``1000``, ``true``, ``[a, b]``, ``null``).
    """
    out: dict[str, Any] = {}
    for name, raw in sorted(environ.items()):
        if not name.startswith(OVERRIDE_PREFIX) or len(name) == len(OVERRIDE_PREFIX):
            continue
        path = name[len(OVERRIDE_PREFIX) :].lower().split("__")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return out


def load_config(path: str | Path | None = None, *, environ: Mapping[str, str] | None = None) -> ResilienceConfig:
    """
    Read and validate the configuration: the file, then its environment overlay, then variables.

    Layers, later ones winning: the file; ``resilience.<env>.yaml`` beside it when
    ``$RESILIENT_ETL_ENV`` is set (dev, test, prod…); ``RESILIENT_ETL__SECTION__KEY`` variables.

    :param path: the file; defaults to :func:`config_path`
    :param environ: the environment to read (default: the process's)
    :raises ConfigError: a file is missing or not YAML, or the merged result is invalid (field named)
    """
    environ = os.environ if environ is None else environ
    file = Path(path) if path else config_path()
    data = _read_yaml(file)
    sources = [str(file)]
    if not isinstance(data, dict):  # before any overlay could replace it
        return parse_config(data, base_dir=file.resolve().parent, source=str(file))
    env_name = environ.get(ENVIRONMENT_ENV)
    if env_name:
        overlay_file = file.with_name(f"{file.stem}.{env_name}{file.suffix}")
        if not overlay_file.is_file():
            raise ConfigError(f"{ENVIRONMENT_ENV}={env_name}: no overlay file {overlay_file}", field=ENVIRONMENT_ENV, value=env_name)
        data = deep_merge(data, _read_yaml(overlay_file) or {})
        sources.append(str(overlay_file))
    overrides = env_overrides(environ)
    if overrides:
        data = deep_merge(data, overrides)
        sources.append(f"{OVERRIDE_PREFIX}* variables")
    return parse_config(data, base_dir=file.resolve().parent, source=" + ".join(sources))


@lru_cache(maxsize=8)
def _cached(path: str, mtime_ns: int, environment: tuple[tuple[str, str], ...]) -> ResilienceConfig:
    return load_config(path, environ=dict(environment))


def get_config() -> ResilienceConfig:
    """Return the configuration in force, re-read only when the file or the relevant variables change."""
    file = config_path()
    try:
        mtime = file.stat().st_mtime_ns
    except OSError:
        mtime = 0
    relevant = tuple(sorted((k, v) for k, v in os.environ.items() if k == ENVIRONMENT_ENV or k.startswith(OVERRIDE_PREFIX)))
    return _cached(str(file), mtime, relevant)
