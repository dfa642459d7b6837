"""
The configuration's schema: one pydantic model per section of ``config/resilience.yaml``.

Each policy is declared here once (:class:`RetryPolicy`, :class:`BreakerPolicy`); the resilience
layer runs them as they are. Reading the file and its overlays is :mod:`resilient_etl.config.loader`.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from resilient_etl.exceptions import Category, Severity


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
    batch_size: int = Field(20_000, ge=1, le=100_000)
    chunk_size: int = Field(100, ge=1, le=10_000)
    max_quarantine_share: float = Field(0.05, ge=0, le=1)  # of a batch rejected by the database


class ApiConfig(_Strict):
    conn_id: str = Field(min_length=1)
    timeout_seconds: float = Field(10.0, gt=0, le=300)
    # An answer fetched this recently is used again without calling the API (a rerun of an unchanged
    # drop makes no calls); an older one is refreshed. 0: every run looks every key up live.
    cache_ttl_hours: float = Field(0.0, ge=0, le=24 * 366)


class CompaniesHouseApiConfig(ApiConfig):
    pace: bool = True  # pace requests by the quota from the X-Ratelimit-* headers, shared by every worker
    # Send each window's quota at once down to this many requests, those at the quota's own rate (the
    # fastest a fixed window allows); null spreads every window evenly from its first request.
    burst_reserve: int | None = Field(10, ge=1, le=10_000)


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


class RetryPolicy(_Strict):
    """
    How one dependency is retried inside a task (``retry.<dependency>``; the retry layer reads it).

    :param dependency: its name in logs (``database``, ``postcodes_io``, ``companies_house``); set by
        :meth:`RetryConfig.policy`, never written in the file
    :param max_attempts: attempts in all, the first included
    :param initial_wait_seconds: backoff ceiling of the first retry
    :param multiplier: growth of the ceiling per attempt
    :param max_wait_seconds: cap on one backoff wait
    :param max_elapsed_seconds: give up rather than start a wait that would end past this
    :param max_server_wait_seconds: the longest server-requested wait (Retry-After, quota reset) to
        honour; a longer one gives up at once instead of waiting less and being refused again
    """

    dependency: str = Field("", exclude=True)
    max_attempts: int = Field(5, ge=1, le=50)
    initial_wait_seconds: float = Field(0.5, ge=0, le=600)
    multiplier: float = Field(2.0, ge=1, le=10)
    max_wait_seconds: float = Field(30, ge=0, le=3600)
    max_elapsed_seconds: float = Field(120, gt=0, le=86_400)
    max_server_wait_seconds: float = Field(330, ge=0, le=3600)


class RetryBudgetPolicy(_Strict):
    """
    The retry budget of one API, shared by every worker (``retry_budget``; Google SRE's per-client budget).

    :param share: retries allowed as a share of the first attempts in the window (0.1 = 10 %)
    :param min_retries: retries always allowed per window, so a quiet API can still retry a lone blip
    :param window_seconds: the sliding window the counts cover
    """

    share: float = Field(0.1, ge=0, le=1)
    min_retries: int = Field(10, ge=0, le=1000)
    window_seconds: float = Field(60, gt=0, le=3600)


class RetryBudgetConfig(_Strict):
    """Per-API retry budgets; ``enabled: false`` turns them off (each task then retries on its own policy only)."""

    enabled: bool = True
    postcodes_io: RetryBudgetPolicy = RetryBudgetPolicy()
    companies_house: RetryBudgetPolicy = RetryBudgetPolicy()

    def policy(self, name: Literal["postcodes_io", "companies_house"]) -> RetryBudgetPolicy:
        """Return the retry budget of ``name``."""
        section: RetryBudgetPolicy = getattr(self, name)
        return section


class RetryConfig(_Strict):
    database: RetryPolicy = RetryPolicy()
    postcodes_io: RetryPolicy = RetryPolicy()
    companies_house: RetryPolicy = RetryPolicy()

    def policy(self, dependency: Literal["database", "postcodes_io", "companies_house"]) -> RetryPolicy:
        """Return the retry policy of ``dependency``, named for its logs."""
        section: RetryPolicy = getattr(self, dependency)
        return section.model_copy(update={"dependency": dependency})


class SharedStateConfig(_Strict):
    """Where state shared by every worker lives (quota pacing, breaker state)."""

    store: Literal["auto", "redis", "sql"] = "auto"  # auto: Redis when the connection exists, else SQL
    redis_conn_id: str = Field("breaker_store", min_length=1)


class BreakerPolicy(_Strict):
    """
    When one API's circuit breaker opens and how it heals (``breakers.<api>``; the breaker reads it).

    :param name: the breaker (one per API); set by :meth:`BreakersConfig.policy`, never written in the file
    :param fail_max: consecutive failures that open it
    :param failure_rate_threshold: share of failed calls in the window that opens it …
    :param minimum_calls: … once the window holds at least this many calls
    :param window_seconds: the sliding window
    :param reset_timeout_seconds: seconds open before one probe is let through
    :param success_threshold: successful probes that close it again
    :param sync_seconds: while closed, how often a worker reads the shared state and flushes its
        successes; failures are written at once. A worker learns that another one opened the breaker
        at most this late.
    """

    name: str = Field("", exclude=True)
    fail_max: int = Field(5, ge=1, le=1000)
    failure_rate_threshold: float = Field(0.5, gt=0, le=1)
    minimum_calls: int = Field(10, ge=1, le=100_000)
    window_seconds: float = Field(60, ge=1, le=86_400)
    reset_timeout_seconds: float = Field(30, gt=0, le=86_400)
    success_threshold: int = Field(1, ge=1, le=100)
    sync_seconds: float = Field(0.5, ge=0, le=60)

    @property
    def bucket_seconds(self) -> float:
        """Return the granularity of the window (a tenth of it, at least a second)."""
        return max(1.0, self.window_seconds / 10)

    @property
    def probe_lease(self) -> float:
        """Return how long a probe may take before another worker may probe instead."""
        return max(self.reset_timeout_seconds, 5.0)


class BreakersConfig(_Strict):
    postcodes_io: BreakerPolicy = BreakerPolicy()
    companies_house: BreakerPolicy = BreakerPolicy()

    def policy(self, name: Literal["postcodes_io", "companies_house"]) -> BreakerPolicy:
        """Return the breaker policy of ``name``."""
        section: BreakerPolicy = getattr(self, name)
        return section.model_copy(update={"name": name})


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
    """Data-quality thresholds per rule (see :mod:`resilient_etl.pipeline.quality`)."""

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
_MATRIX_FIELDS: dict[str, Any] = {c.value: (MatrixEntryConfig, ...) for c in Category}
ClassificationConfig = create_model("ClassificationConfig", __base__=_ClassificationBase, **_MATRIX_FIELDS)


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


class RetentionConfig(_Strict):
    """Which backup sets are kept: always the newest ``keep_last``; any other once older than ``keep_days``."""

    keep_last: int = Field(7, ge=1, le=1000)
    keep_days: float = Field(30, ge=0, le=3650)


class BackupConfig(_Strict):
    """``resilient-etl backup`` and the ``warehouse_backup`` DAG (docs/disaster-recovery.md)."""

    dir: Path = Path("../backups")  # relative to the config file, as the paths are
    schedule: str | None = "0 2 * * *"
    retention: RetentionConfig = RetentionConfig()
    # Fernet key (44 characters, urlsafe base64) encrypting connection secrets in a set; unset: left out
    key_env: str = Field("RESILIENT_ETL_BACKUP_KEY", pattern=r"^[A-Z_][A-Z0-9_]*$")
    dags: list[str] = Field(["company_enrichment"], min_length=1)  # whose task_state_store rows a set keeps


class RecoveryConfig(_Strict):
    """Manual overrides that go through the Airflow REST API (``resilient-etl pipeline pause|resume``)."""

    # host = the API server's URL, login/password = a user allowed to pause DAGs
    airflow_api_conn_id: str = Field("airflow_api", min_length=1)
    dags: list[str] = Field(["company_enrichment"], min_length=1)  # what `pipeline pause` pauses


class Objective(_Strict):
    """A recovery objective: back within ``rto_minutes``, losing at most ``rpo_minutes`` of work."""

    rto_minutes: float = Field(gt=0, le=10_080)
    rpo_minutes: float = Field(ge=0, le=10_080)


class DrDrillConfig(_Strict):
    """The scheduled DR drills (DAG ``dr_drill``): what runs, where, and how stale a result may get."""

    schedule: str | None = "0 4 * * 0"
    target: str = Field("local", min_length=1)
    scenarios: list[str] = Field(["dr-restore", "pg-failover"], min_length=1)
    max_age_days: float = Field(8, gt=0, le=366)  # a drill not passed for longer than this alerts


class DisasterRecoveryConfig(_Strict):
    """RTO/RPO per component, measured by the DR drills (docs/disaster-recovery.md)."""

    objectives: dict[Literal["warehouse", "config", "metadata"], Objective] = {
        "warehouse": Objective(rto_minutes=60, rpo_minutes=1440),
        "config": Objective(rto_minutes=15, rpo_minutes=0),
        "metadata": Objective(rto_minutes=120, rpo_minutes=1440),
    }
    drills: DrDrillConfig = DrDrillConfig()

    @model_validator(mode="after")
    def _every_component(self) -> DisasterRecoveryConfig:
        missing = {"warehouse", "config", "metadata"} - set(self.objectives)
        if missing:
            raise ValueError(
                f"objectives: missing {', '.join(sorted(missing))} (each of warehouse, config, metadata needs rto_minutes and rpo_minutes)"
            )
        return self


class Consumer(_Strict):
    """
    Someone who uses the supplier data, and what its lateness costs them.

    :param who: the team or process
    :param cannot: what they cannot do while the data is late or wrong
    :param affected_by: the failure categories that reach them (others are absorbed before they notice)
    :param cost_per_hour_late: cost of each hour the load is late, in business hours
    :param off_hours_factor: share of that cost for an hour outside business hours
    :param cutoff: the time of day the data must be in by (the 09:00 procurement run); None: no cut-off
    :param missed_cutoff_cost: cost of missing the cut-off once (a run re-planned, a payment batch moved)
    """

    who: str = Field(min_length=1)
    cannot: str = Field(min_length=1)
    affected_by: list[Category] = Field(min_length=1)
    cost_per_hour_late: float = Field(ge=0)
    off_hours_factor: float = Field(0.25, ge=0, le=1)
    cutoff: dt.time | None = None
    missed_cutoff_cost: float = Field(0, ge=0)


class Penalty(_Strict):
    """A contractual or regulatory penalty, due once an outage of ``categories`` lasts over ``after_hours``."""

    name: str = Field(min_length=1)
    categories: list[Category] = Field(min_length=1)
    after_hours: float = Field(ge=0)
    amount: float = Field(ge=0)


class Mitigation(_Strict):
    """A way to lower a risk: its yearly cost and how much it takes off the risk's expected annual cost (0-1)."""

    risk: str = Field(pattern=r"^[a-z0-9-]+$")  # a drill scenario
    action: str = Field(min_length=1)
    cost_per_year: float = Field(ge=0)
    reduction: float = Field(gt=0, le=1)


class BusinessImpactConfig(_Strict):
    """
    The cost model of ``resilient-etl impact`` (docs/business-impact.md). The numbers shipped are
    placeholders: replace them with the team's own.

    :param runs_at: when the scheduled load starts (the cut-off slack is counted from its usual end)
    :param usual_run_minutes: how long a run takes when nothing fails
    :param business_hours: the start and end of the business day (UTC), Monday to Friday
    :param response_minutes: how long until a person acts on an alert, per severity
    :param people_cost_per_hour: what an hour of manual recovery costs
    :param recovery_hours: people-hours of the recovery each drill recovery mode needs
    :param per_row_missing: cost per supplier row missing (lost) after recovery
    :param per_row_duplicated: cost per supplier row doubled after recovery
    :param priors_per_year: the expected occurrences per year of each drill scenario where the
        warehouse's incident history says nothing yet (a documented guess)
    """

    currency: str = Field("GBP", min_length=3, max_length=3)
    runs_at: dt.time = dt.time(2, 0)
    usual_run_minutes: float = Field(20, gt=0)
    business_hours: tuple[dt.time, dt.time] = (dt.time(8, 0), dt.time(18, 0))
    response_minutes: dict[Severity, float] = {Severity.SEV1: 15, Severity.SEV2: 60, Severity.SEV3: 240, Severity.SEV4: 1440}
    people_cost_per_hour: float = Field(90, ge=0)
    recovery_hours: dict[str, float] = {"automatic": 0.25, "clear": 1, "rollback_config": 1.5, "restore_backup": 4, "failover": 3}
    per_row_missing: float = Field(5, ge=0)
    per_row_duplicated: float = Field(20, ge=0)
    consumers: dict[str, Consumer] = Field(min_length=1)
    penalties: list[Penalty] = []
    priors_per_year: dict[str, float] = {}
    mitigations: list[Mitigation] = []

    @model_validator(mode="after")
    def _consistent(self) -> BusinessImpactConfig:
        if self.business_hours[0] >= self.business_hours[1]:
            raise ValueError("business_hours: the start must be before the end")
        missing = {s.value for s in Severity} - {s.value for s in self.response_minutes}
        if missing:
            raise ValueError(f"response_minutes: missing {', '.join(sorted(missing))}")
        for name, value in self.priors_per_year.items():
            if value < 0:
                raise ValueError(f"priors_per_year.{name}: {value} is negative")
        return self


class ResilienceConfig(_Strict):
    """The whole file."""

    paths: PathsConfig
    load: LoadConfig = LoadConfig()
    apis: ApisConfig
    warehouse: WarehouseConfig = WarehouseConfig()
    retry: RetryConfig = RetryConfig()
    retry_budget: RetryBudgetConfig = RetryBudgetConfig()
    shared_state: SharedStateConfig = SharedStateConfig()
    breakers: BreakersConfig = BreakersConfig()
    fallback: FallbackConfig = FallbackConfig()
    maintenance: MaintenanceConfig = MaintenanceConfig()
    quality: QualityConfig = QualityConfig()
    dag: DagConfig
    classification: ClassificationConfig
    alerts: AlertsConfig
    deadlines: DeadlinesConfig = DeadlinesConfig()
    health: HealthConfig = HealthConfig()
    backup: BackupConfig = BackupConfig()
    recovery: RecoveryConfig = RecoveryConfig()
    disaster_recovery: DisasterRecoveryConfig = DisasterRecoveryConfig()
    business_impact: BusinessImpactConfig | None = None
