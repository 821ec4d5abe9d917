"""Loading and validating the daemon config and the policy files into core values.

Public API: ``load_config``, ``load_policies``, ``load_setup`` (both at once),
``config_path`` (``--config`` / ``$CVMKEEPER_CONFIG`` / default), ``ConfigError`` (every
problem as ``file:line:col: key.path: message``), and the ``Config`` values.
"""

from cvmkeeper.config.errors import ConfigError, Problem
from cvmkeeper.config.loader import (
    BrokenPolicy,
    Setup,
    config_path,
    load_config,
    load_policies,
    load_setup,
    parse_config_text,
    parse_policy_text,
    with_stand_ins,
)
from cvmkeeper.config.model import (
    CONFIG_ENV,
    DEFAULT_CONFIG_PATH,
    ApiSettings,
    CloudSettings,
    Config,
    CredentialSettings,
    OrphanSettings,
    RetrySettings,
    Secret,
    SentrySettings,
)

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG_PATH",
    "ApiSettings",
    "BrokenPolicy",
    "CloudSettings",
    "Config",
    "ConfigError",
    "CredentialSettings",
    "OrphanSettings",
    "Problem",
    "RetrySettings",
    "Secret",
    "SentrySettings",
    "Setup",
    "config_path",
    "load_config",
    "load_policies",
    "load_setup",
    "parse_config_text",
    "parse_policy_text",
    "with_stand_ins",
]
