"""
The business impact of each failure: what one occurrence costs (the cost model in ``business_impact``
applied to the *measured* detection and recovery times of its drill), how often it happens (the
warehouse's incident history, else the documented prior), the expected annual cost, and what each
mitigation would save. Pure functions of the config, the drill results and the history; the
document and the heat map are :mod:`resilient_etl_devtools.impact_report`'s.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from resilient_etl.config import ResilienceConfig
from resilient_etl.config.models import BusinessImpactConfig
from resilient_etl_devtools.drills.catalogue import Catalogue

# Bands of the probability x impact matrix: occurrences per year; cost of one occurrence.
PROBABILITY_BANDS = (("rare", 0.5), ("occasional", 2.0), ("likely", 12.0), ("frequent", float("inf")))
IMPACT_BANDS = (("minor", 100.0), ("moderate", 1_000.0), ("major", 10_000.0), ("severe", float("inf")))


@dataclass(frozen=True)
class Cost:
    """What one occurrence of a scenario costs, and why."""

    scenario: str
    category: str
    severity: str
    hours_down: float  # detection + (a person's response when one must act) + measured recovery
    lateness: dict[str, float]  # consumer -> cost of the hours late
    cutoff: dict[str, float]  # consumer -> cost of missing its cut-off
    people: float
    rows: float
    penalties: dict[str, float]

    @property
    def total(self) -> float:
        return sum(self.lateness.values()) + sum(self.cutoff.values()) + self.people + self.rows + sum(self.penalties.values())


@dataclass(frozen=True)
class Risk:
    """A scenario's cost, frequency and expected annual cost."""

    cost: Cost
    per_year: float
    source: str  # "history (N incidents over D days)" or "prior"

    @property
    def expected_annual(self) -> float:
        return self.cost.total * self.per_year

    @property
    def probability_band(self) -> str:
        return next(name for name, top in PROBABILITY_BANDS if self.per_year < top)

    @property
    def impact_band(self) -> str:
        return next(name for name, top in IMPACT_BANDS if self.cost.total < top)


def _hours_between(start: dt.time, end: dt.time) -> float:
    return (dt.datetime.combine(dt.date.min, end) - dt.datetime.combine(dt.date.min, start)).total_seconds() / 3600


def business_share(model: BusinessImpactConfig, start: dt.time, hours: float) -> float:
    """Return the share of ``hours`` from ``start`` (on a weekday) that fall in business hours (steps of 6 minutes)."""
    if hours <= 0:
        return 0.0
    steps = max(1, round(hours * 10))
    opens, closes = model.business_hours
    at = dt.datetime.combine(dt.date(2026, 12, 1), start)  # a Tuesday: a business day, as the scheduled load's mostly are
    inside = 0
    for n in range(steps):
        t = (at + dt.timedelta(hours=hours * (n + 0.5) / steps)).time()
        inside += opens <= t < closes
    return inside / steps


def occurrence_cost(cfg: ResilienceConfig, catalogue: Catalogue, result: dict[str, Any]) -> Cost:
    """
    Return what one occurrence of ``result``'s scenario costs under the cost model.

    Hours down = measured detection + recovery (the RTO already counts from the fault) + the response
    time of the category's severity when the recovery needs a person (anything but ``automatic``).
    The load starts at ``runs_at`` and is late from its usual end; lateness costs each affected
    consumer its hourly rate (``off_hours_factor`` of it outside business hours), and a consumer with a
    cut-off pays ``missed_cutoff_cost`` when the late end passes it.
    """
    model = cfg.business_impact
    assert model is not None
    scenario = catalogue.scenarios[result["scenario"]]
    entry = cfg.classification.entries()[scenario.category]
    manual = scenario.recovery.mode != "automatic"
    response = model.response_minutes[entry.severity] / 60 if manual else 0.0
    hours = (result.get("rto_s") or 0.0) / 3600 + response
    usual_end = (dt.datetime.combine(dt.date(2026, 12, 1), model.runs_at) + dt.timedelta(minutes=model.usual_run_minutes)).time()
    inside = business_share(model, usual_end, hours)
    lateness, cutoff = {}, {}
    for name, consumer in model.consumers.items():
        if scenario.category not in consumer.affected_by:
            continue
        rate = consumer.cost_per_hour_late
        lateness[name] = round(hours * rate * (inside + (1 - inside) * consumer.off_hours_factor), 2)
        if consumer.cutoff is not None and hours > _hours_between(usual_end, consumer.cutoff):
            cutoff[name] = consumer.missed_cutoff_cost
    penalties = {p.name: p.amount for p in model.penalties if scenario.category in p.categories and hours > p.after_hours}
    people = model.people_cost_per_hour * model.recovery_hours.get(scenario.recovery.mode, 1.0)
    rows = model.per_row_missing * (result.get("rows_lost") or 0) + model.per_row_duplicated * (result.get("rows_duplicated") or 0)
    return Cost(result["scenario"], scenario.category, entry.severity, round(hours, 3), lateness, cutoff, people, rows, penalties)


def frequencies(cfg: ResilienceConfig, catalogue: Catalogue, history: dict[str, int] | None, days: float) -> dict[str, tuple[float, str]]:
    """
    Return each scenario's occurrences per year and where the figure comes from.

    :param history: incidents per category in the warehouse (None: no history used, priors only)
    :param days: how many days that history covers
    """
    model = cfg.business_impact
    assert model is not None
    per_category: dict[str, list[str]] = {}
    for name, s in catalogue.scenarios.items():
        per_category.setdefault(s.category, []).append(name)
    out = {}
    for name, s in catalogue.scenarios.items():
        count = (history or {}).get(s.category, 0)
        if history is not None and count and days >= 30:
            share = count / len(per_category[s.category])  # a category's incidents, shared by the drills that exercise it
            out[name] = (round(share * 365 / days, 3), f"history: {count} {s.category} incidents in {days:.0f} days")
        else:
            out[name] = (model.priors_per_year.get(name, 1.0), "prior" if name in model.priors_per_year else "prior (default 1/year)")
    return out


def risks(
    cfg: ResilienceConfig, catalogue: Catalogue, results: list[dict[str, Any]], history: dict[str, int] | None = None, days: float = 0
) -> list[Risk]:
    """Return every recorded scenario's risk, the largest expected annual cost first."""
    freq = frequencies(cfg, catalogue, history, days)
    out = [Risk(occurrence_cost(cfg, catalogue, r), *freq[r["scenario"]]) for r in results if r["scenario"] in catalogue.scenarios]
    return sorted(out, key=lambda r: (-r.expected_annual, r.cost.scenario))


def incident_history(warehouse: Any) -> tuple[dict[str, int], float]:
    """Return (incidents per category, days the history covers) from the warehouse's ``incidents`` and ``pipeline_runs``."""
    from sqlalchemy import func, select

    from resilient_etl.hooks.warehouse.schema import incidents, pipeline_runs

    with warehouse.begin() as conn:
        counts = dict(conn.execute(select(incidents.c.category, func.sum(incidents.c.occurrences)).group_by(incidents.c.category)).all())
        first = conn.execute(select(func.min(pipeline_runs.c.finished_at))).scalar()
    if first is None:
        return {k: int(v) for k, v in counts.items()}, 0.0
    first = first if first.tzinfo else first.replace(tzinfo=dt.UTC)
    return {k: int(v) for k, v in counts.items()}, (dt.datetime.now(dt.UTC) - first).total_seconds() / 86_400
