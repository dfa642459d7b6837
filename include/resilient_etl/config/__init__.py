"""The validated configuration: the schema (:mod:`.models`) and how it is found and read (:mod:`.loader`)."""

from __future__ import annotations

from resilient_etl.config.loader import (
    CONFIG_ENV,
    ENVIRONMENT_ENV,
    OVERRIDE_PREFIX,
    config_path,
    deep_merge,
    env_overrides,
    get_config,
    load_config,
    parse_config,
)
from resilient_etl.config.models import *  # noqa: F403 - the section models are the package's public API
from resilient_etl.config.models import BreakerPolicy, ResilienceConfig, RetryPolicy

__all__ = [
    "CONFIG_ENV",
    "ENVIRONMENT_ENV",
    "OVERRIDE_PREFIX",
    "BreakerPolicy",
    "ResilienceConfig",
    "RetryPolicy",
    "config_path",
    "deep_merge",
    "env_overrides",
    "get_config",
    "load_config",
    "parse_config",
]
