"""
The drill catalogue (``config/drills.yaml``): targets a drill may run against, and scenarios.

A scenario is a Chaos Toolkit experiment in this project's terms: the fault and where it is injected
(``fault``), when and for how long (``start``, ``duration_seconds``), the steady state checked before
and after (``steady_state``), the recovery it expects (``recovery``: automatic, or the runbook step the
drill applies), and its targets (detection time, RTO, RPO). Validated like the rest of the config: a
bad value raises :class:`ConfigError` naming the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from resilient_etl.exceptions import ConfigError
from resilient_etl_devtools.paths import PROJECT_ROOT

CATALOGUE_FILE = PROJECT_ROOT / "config" / "drills.yaml"
API_LINKS = ("postcodes_io", "companies_house")
STEADY_STATE = ("health", "breakers_closed", "reconciled", "exactly_once")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HttpFault(_Strict):
    """The sandbox API answers badly: a status (503, 429 + Retry-After), a hang, a truncated body."""

    kind: Literal["http"]
    api: Literal["postcodes_io", "companies_house"]
    status: int | None = Field(None, ge=400, le=599)
    retry_after: int | None = Field(None, ge=0)
    hang_seconds: float = Field(0, ge=0)
    truncate: bool = False

    @model_validator(mode="after")
    def _one_fault(self) -> HttpFault:
        if self.status is None and not self.hang_seconds and not self.truncate:
            raise ValueError("an http fault needs status, hang_seconds or truncate")
        return self


class ProxyFault(_Strict):
    """A network fault on the TCP link between the pipeline and a dependency (``resilient-etl proxy`` toxics)."""

    kind: Literal["proxy"]
    link: Literal["postcodes_io", "companies_house", "warehouse", "redis"]
    toxic: Literal["latency", "bandwidth", "timeout", "reset_peer", "down"]
    latency_ms: int = Field(0, ge=0)
    jitter_ms: int = Field(0, ge=0)
    rate_kb: int = Field(0, ge=0)  # bandwidth: KB/s
    timeout_ms: int = Field(0, ge=0)  # timeout: data stops, the connection closes after this (0: never)


class KillFault(_Strict):
    """The process running the pipeline's task is killed (SIGKILL) once ``after_chunks`` chunks are committed."""

    kind: Literal["kill"]
    after_chunks: int = Field(1, ge=0)


class FilesystemFault(_Strict):
    """The archive folder is full (a small tmpfs over it) or read-only (immutable)."""

    kind: Literal["filesystem"]
    folder: Literal["archive", "landing"] = "archive"
    mode: Literal["full", "read_only"]
    size_kb: int = Field(64, ge=16)


class FileFault(_Strict):
    """A malformed file lands beside a good drop."""

    kind: Literal["malformed_file"]
    content: Literal["binary", "wrong_header"] = "binary"


class ConfigFault(_Strict):
    """A bad config is deployed (one field set to an invalid value)."""

    kind: Literal["bad_config"]
    field: str = Field(pattern=r"^[a-z_]+(\.[a-z_]+)+$")
    value: Any


class DisasterFault(_Strict):
    """
    A disaster, not a blip: the warehouse database is dropped (recovered from the last backup set), or the
    PostgreSQL primary is lost (recovered by promoting its streaming standby).
    """

    kind: Literal["disaster"]
    event: Literal["warehouse_dropped", "primary_lost"]


Fault = Annotated[HttpFault | ProxyFault | KillFault | FilesystemFault | FileFault | ConfigFault | DisasterFault, Field(discriminator="kind")]


class Recovery(_Strict):
    """
    What brings the pipeline back.

    ``automatic``: nothing but the next run (the drill starts one once the fault is removed);
    ``clear``: the runbook's clear of the failed run (the drill reruns it, same run id);
    ``rollback_config``: the runbook's config rollback, then the next run;
    ``restore_backup``: the runbook's restore of the last backup set (and the archive's files of later
    runs back to landing), then the next run; ``failover``: the standby promoted and the warehouse
    address moved to it, then a clear of a run that failed.
    """

    mode: Literal["automatic", "clear", "rollback_config", "restore_backup", "failover"]
    runbook: str = Field(pattern=r"^[a-z0-9-]+$")  # the section of docs/runbooks.md


class Targets(_Strict):
    """What the drill must achieve; a measured value beyond one fails the drill."""

    detect_seconds: float | None = Field(None, gt=0)  # None: the fault is not meant to be detected (it is absorbed)
    rto_seconds: float = Field(gt=0)
    rows_lost: int = Field(0, ge=0)
    rows_duplicated: int = Field(0, ge=0)


class Lesson(_Strict):
    """What a drill taught: kept by the report generator, edited here by the team."""

    observed: str
    changed: str


class Scenario(_Strict):
    """One drill."""

    title: str
    category: str  # the failure category of the taxonomy (config classification) it exercises
    fault: Fault
    injected_at: str  # where, in words, for the report
    # before_run; during_load (after the first chunks commit); after_run (once run 1 succeeded)
    start: Literal["before_run", "during_load", "after_run"] = "before_run"
    duration_seconds: float = Field(gt=0)
    steady_state: tuple[Literal["health", "breakers_closed", "reconciled", "exactly_once"], ...] = STEADY_STATE
    recovery: Recovery
    targets: Targets
    executors: tuple[Literal["local", "celery"], ...] = ("local",)
    fast: bool = False  # in the subset `make test` runs on every change
    lessons: tuple[Lesson, ...] = ()


class DrillTarget(_Strict):
    """
    A deployment a drill may run against. ``drillable: false`` marks one a drill must refuse (production).

    ``local`` builds its own: sandbox APIs, alert sinks and a warehouse behind fault proxies, the pipeline
    run by ``airflow dags test`` (LocalExecutor semantics, the task in the run's own process).
    """

    drillable: bool
    description: str
    executor: Literal["local", "celery"] = "local"
    warehouse: Literal["postgres", "sqlite"] = "postgres"
    rows: int = Field(200, ge=10)
    config_overrides: dict[str, Any] = Field(default_factory=dict)


class Catalogue(_Strict):
    """Every drill target and scenario."""

    targets: dict[str, DrillTarget]
    scenarios: dict[Annotated[str, Field(pattern=r"^[a-z0-9-]+$")], Scenario]

    @model_validator(mode="after")
    def _consistent(self) -> Catalogue:
        for name, s in self.scenarios.items():
            if s.fault.kind == "kill" and s.start != "during_load":
                raise ValueError(f"scenarios.{name}.start: a kill fault needs start: during_load")
            if s.recovery.mode == "rollback_config" and s.fault.kind != "bad_config":
                raise ValueError(f"scenarios.{name}.recovery.mode: rollback_config only undoes a bad_config fault")
            wanted = {"warehouse_dropped": "restore_backup", "primary_lost": "failover"}.get(getattr(s.fault, "event", ""))
            if (s.recovery.mode in ("restore_backup", "failover") or wanted) and s.recovery.mode != wanted:
                raise ValueError(f"scenarios.{name}.recovery.mode: a dropped warehouse needs restore_backup, a lost primary failover")
        return self

    def scenario(self, name: str) -> Scenario:
        """Return scenario ``name``; :class:`ConfigError` lists the ones there are."""
        if name not in self.scenarios:
            raise ConfigError(f"no drill scenario {name!r} (scenarios: {', '.join(self.scenarios)})", field="scenarios", value=name)
        return self.scenarios[name]

    def target(self, name: str) -> DrillTarget:
        """Return the target ``name``, refusing one that is not marked drillable."""
        if name not in self.targets:
            raise ConfigError(f"no drill target {name!r} (targets: {', '.join(self.targets)})", field="targets", value=name)
        target = self.targets[name]
        if not target.drillable:
            raise ConfigError(
                f"drill target {name!r} is not drillable (targets.{name}.drillable is false): drills inject real faults and never run there",
                field=f"targets.{name}.drillable",
                value=False,
            )
        return target


def load_catalogue(path: Path | None = None) -> Catalogue:
    """
    Read and validate the catalogue.

    :param path: the YAML file (default ``config/drills.yaml``)
    :raises ConfigError: a field is invalid (named with its path)
    """
    path = path or CATALOGUE_FILE
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the drill catalogue: {exc}", field="<file>", value=str(path)) from exc
    try:
        return Catalogue.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "<root>"
        raise ConfigError(f"{path}: {field}: {err['msg']} (got {err.get('input')!r})", field=field, value=err.get("input")) from exc
