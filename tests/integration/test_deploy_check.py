"""``resilient-etl deploy check`` against a real target: each check says what it saw, and a failing one fails the command."""

from __future__ import annotations

from pathlib import Path

import pytest

from resilient_etl.deploy import deploy_check
from resilient_etl.hooks.warehouse import WarehouseHook, migrations


def _by_check() -> dict[str, tuple[bool, str]]:
    return {r.check: (r.ok, r.detail) for r in deploy_check()}


@pytest.mark.airflow_run
def test_deploy_check_names_what_is_missing_or_behind_and_passes_once_fixed(
    sqlite_warehouse: dict[str, object], api_connections: object, airflow_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_SMTP_DEFAULT", raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_SLACK_ALERTS", '{"conn_type": "slackwebhook", "host": "http://127.0.0.1:9", "password": "t"}')
    with WarehouseHook("warehouse_default").begin() as conn:
        migrations.upgrade(conn, "0001")  # a release behind

    before = _by_check()
    assert before["config"][0]
    assert before["connection warehouse_default"][0] and before["connection postcodes_io_default"][0]
    assert before["connection smtp_default"] == (False, "not defined (AIRFLOW_CONN_*, the metadata DB or the secrets backend)")
    assert before["warehouse migrations"] == (False, f"at 0001, the code needs {migrations.head()}: run `resilient-etl db upgrade`")
    assert before["dag import errors"] == (True, "none")
    assert before["workers"][0] and "runs tasks itself" in before["workers"][1]

    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", '{"conn_type": "smtp", "host": "127.0.0.1", "port": 9}')
    with WarehouseHook("warehouse_default").begin() as conn:
        migrations.upgrade(conn)
    after = _by_check()
    assert after["warehouse migrations"] == (True, f"at head {migrations.head()}")
    assert after["connection smtp_default"][0]
    # no scheduler runs here and nothing listens on the SMTP port: health says so, and only health fails
    ok, detail = after.pop("health")
    assert not ok and "airflow:status" in detail and "smtp:status" in detail
    assert all(ok for ok, _ in after.values()), {k: v for k, v in after.items() if not v[0]}
