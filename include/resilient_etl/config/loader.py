"""
Read and validate the configuration: the file, its environment overlay, then variables.

Where the file is: ``$RESILIENT_ETL_CONFIG``; else ``resilience.yaml`` in the Airflow home
(``$AIRFLOW_HOME``, an installed provider's place for it); else, inside a source checkout, the
checkout's ``config/resilience.yaml``. A bad value raises :class:`ConfigError` naming the field path
and the offending value, so a DAG fails to import with that message and ``resilient-etl config check``
prints it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from resilient_etl.config.models import PathsConfig, ResilienceConfig
from resilient_etl.exceptions import ConfigError

CONFIG_ENV = "RESILIENT_ETL_CONFIG"
ENVIRONMENT_ENV = "RESILIENT_ETL_ENV"  # dev | test | prod: merges config/resilience.<env>.yaml over the base
OVERRIDE_PREFIX = "RESILIENT_ETL__"  # RESILIENT_ETL__LOAD__BATCH_SIZE=1000 sets load.batch_size
CONFIG_FILE_NAME = "resilience.yaml"
# include/resilient_etl/config/loader.py -> the checkout; only meaningful when running from one
_CHECKOUT_CONFIG = Path(__file__).resolve().parents[3] / "config" / CONFIG_FILE_NAME


def _describe(errors: Sequence[Mapping[str, Any]]) -> tuple[str, str, Any]:
    lines = []
    for err in errors:
        field = ".".join(str(p) for p in err["loc"]) or "<root>"
        value = err.get("input")
        lines.append(f"{field}: {err['msg']} (got {value!r})")
    first = errors[0]
    return "; ".join(lines), ".".join(str(p) for p in first["loc"]), first.get("input")


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    """
    Return the config file in force: ``$RESILIENT_ETL_CONFIG``, the Airflow home's, or the checkout's.

    :param environ: the environment to read (default: the process's)
    :raises ConfigError: none of them exists (the message names where it was looked for)
    """
    environ = os.environ if environ is None else environ
    if environ.get(CONFIG_ENV):
        return Path(environ[CONFIG_ENV])
    candidates = []
    if environ.get("AIRFLOW_HOME"):
        candidates.append(Path(environ["AIRFLOW_HOME"]) / CONFIG_FILE_NAME)
    candidates.append(_CHECKOUT_CONFIG)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    looked = ", ".join(str(c) for c in candidates)
    raise ConfigError(f"no configuration file: set {CONFIG_ENV} (looked in {looked})", field=CONFIG_ENV)


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
    update: dict[str, Any] = {
        "paths": PathsConfig(**resolved),
        "backup": cfg.backup.model_copy(update={"dir": (base_dir / cfg.backup.dir).resolve()}),
    }
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
