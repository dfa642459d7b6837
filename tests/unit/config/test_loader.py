from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from _support.paths import CONFIG_FILE as DEFAULT_CONFIG_PATH
from resilient_etl.cli import main
from resilient_etl.config import load_config
from resilient_etl.exceptions import ConfigError


def _write(tmp_path: Path, mutate) -> Path:
    data = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    mutate(data)
    path = tmp_path / "resilience.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_shipped_config_is_valid_and_paths_resolve_against_its_folder() -> None:
    cfg = load_config(DEFAULT_CONFIG_PATH)
    assert cfg.paths.landing == (DEFAULT_CONFIG_PATH.parent / "../data/landing").resolve()
    assert cfg.apis.postcodes_io.bulk_size == 100


@pytest.mark.parametrize(
    ("mutate", "field", "value"),
    [
        (lambda d: d["load"].__setitem__("batch_size", 0), "load.batch_size", 0),
        (lambda d: d["apis"]["postcodes_io"].__setitem__("bulk_size", 101), "apis.postcodes_io.bulk_size", 101),
        (lambda d: d["dag"].__setitem__("retries", "many"), "dag.retries", "many"),
        (lambda d: d["load"].__setitem__("batch_sise", 10), "load.batch_sise", 10),
        (lambda d: d.pop("paths"), "paths", None),
        (lambda d: d["dag"].__setitem__("tags", []), "dag.tags", []),
    ],
)
def test_invalid_values_name_the_field_and_value(tmp_path: Path, mutate, field: str, value) -> None:
    path = _write(tmp_path, mutate)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.field == field
    assert field in str(info.value)
    if value is not None:
        assert repr(value) in str(info.value)


def test_unreadable_and_non_yaml_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("paths: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(scalar)


def test_config_check_command_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check", str(DEFAULT_CONFIG_PATH)]) == 0
    assert "batch_size: 20000" in capsys.readouterr().out
    bad = _write(tmp_path, lambda d: d["load"].__setitem__("chunk_size", -1))
    assert main(["config", "check", str(bad)]) == 1
    assert "load.chunk_size" in capsys.readouterr().err


def test_quality_threshold_errors_name_the_field(tmp_path: Path) -> None:
    path = _write(tmp_path, lambda d: d["quality"].__setitem__("invalid_postcode", {"warn": 0.2, "fail": 0.1}))
    with pytest.raises(ConfigError, match=r"quality.invalid_postcode: Value error, warn \(0.2\) must not be above fail \(0.1\)"):
        load_config(path)
    path = _write(tmp_path, lambda d: d["quality"].__setitem__("invalid_postcode", {"warn": 0.2, "fail": 1.5}))
    with pytest.raises(ConfigError, match=r"quality.invalid_postcode.fail"):
        load_config(path)


def test_environment_overlay_and_variable_overrides(tmp_path: Path) -> None:
    base = _write(tmp_path, lambda d: None)
    (tmp_path / "resilience.staging.yaml").write_text("load:\n  batch_size: 50\nquality:\n  invalid_postcode: {warn: 0.1, fail: 0.3}\n")
    cfg = load_config(base, environ={"RESILIENT_ETL_ENV": "staging"})
    assert cfg.load.batch_size == 50 and cfg.load.chunk_size == 100  # merged, not replaced
    assert cfg.quality.invalid_postcode.fail == 0.3
    cfg = load_config(base, environ={"RESILIENT_ETL_ENV": "staging", "RESILIENT_ETL__LOAD__BATCH_SIZE": "70", "RESILIENT_ETL__DAG__TAGS": "[a, b]"})
    assert cfg.load.batch_size == 70 and cfg.dag.tags == ["a", "b"]  # variables win over the overlay
    with pytest.raises(ConfigError, match="no overlay file") as info:
        load_config(base, environ={"RESILIENT_ETL_ENV": "qa"})
    assert info.value.field == "RESILIENT_ETL_ENV"
    with pytest.raises(ConfigError, match=r"RESILIENT_ETL__\* variables: invalid configuration: load.batch_sise") as info:
        load_config(base, environ={"RESILIENT_ETL__LOAD__BATCH_SISE": "1"})
    assert info.value.field == "load.batch_sise"


def test_shipped_overlays_are_valid() -> None:
    for env in ("dev", "test", "prod"):
        cfg = load_config(DEFAULT_CONFIG_PATH, environ={"RESILIENT_ETL_ENV": env})
        assert cfg.dag.owner
    assert load_config(DEFAULT_CONFIG_PATH, environ={"RESILIENT_ETL_ENV": "prod"}).dag.schedule == "@hourly"


def test_an_installed_provider_finds_its_config_in_the_environment_or_the_airflow_home(tmp_path: Path, monkeypatch) -> None:
    """$RESILIENT_ETL_CONFIG first, then $AIRFLOW_HOME/resilience.yaml, then the checkout's; none: the error says where it looked."""
    from resilient_etl.config import loader

    home = tmp_path / "airflow-home"
    home.mkdir()
    explicit = tmp_path / "elsewhere.yaml"
    assert loader.config_path({"RESILIENT_ETL_CONFIG": str(explicit), "AIRFLOW_HOME": str(home)}) == explicit
    assert loader.config_path({"AIRFLOW_HOME": str(home)}) == DEFAULT_CONFIG_PATH  # no file in the home: the checkout's
    (home / "resilience.yaml").write_text(DEFAULT_CONFIG_PATH.read_text())
    assert loader.config_path({"AIRFLOW_HOME": str(home)}) == home / "resilience.yaml"
    monkeypatch.setattr(loader, "_CHECKOUT_CONFIG", tmp_path / "not-a-checkout" / "resilience.yaml")  # as installed from a wheel
    (home / "resilience.yaml").unlink()
    with pytest.raises(ConfigError) as info:
        loader.config_path({"AIRFLOW_HOME": str(home)})
    assert info.value.field == "RESILIENT_ETL_CONFIG"
    assert str(home / "resilience.yaml") in str(info.value) and "not-a-checkout" in str(info.value)


def test_config_check_without_any_config_file_says_where_it_looked(tmp_path: Path, monkeypatch, capsys) -> None:
    from resilient_etl.config import loader

    monkeypatch.delenv("RESILIENT_ETL_CONFIG", raising=False)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    monkeypatch.setattr(loader, "_CHECKOUT_CONFIG", tmp_path / "not-a-checkout" / "resilience.yaml")
    assert main(["config", "check"]) == 1  # a message, not a traceback
    err = capsys.readouterr().err
    assert err.startswith("INVALID: no configuration file: set RESILIENT_ETL_CONFIG") and str(tmp_path / "resilience.yaml") in err
