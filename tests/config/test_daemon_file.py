"""The daemon config: the issue's keys, defaults, secrets kept out, every problem listed."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from cvmkeeper.config import (
    CONFIG_ENV,
    DEFAULT_CONFIG_PATH,
    ConfigError,
    config_path,
    load_config,
    load_setup,
)

ROOT = Path(__file__).resolve().parents[2]
ISSUE_EXAMPLE = """\
policies_dir: policies         # relative to this file
image_quota: 10
cloud: {endpoint: "127.0.0.1:8765", scheme: http}   # omit both for Tencent Cloud
credentials: {secret_id: AKIDEXAMPLE0123, secret_key_file: /run/credentials/cvmkeeper/key}
sentry: {dsn: "https://cafe1234@o1.ingest.sentry.io/1", environment: production}
"""


def write(tmp_path: Path, text: str, name: str = "cvmkeeper.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    path.chmod(0o600)  # as docs/install.md says; a plain DSN is refused in a world-readable file
    return path


def test_the_issue_example_keeps_its_meaning(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ISSUE_EXAMPLE))
    assert config.policies_dir == (tmp_path / "policies").resolve()
    assert config.image_quota == 10
    assert config.cloud.endpoint == "127.0.0.1:8765"
    assert config.cloud.scheme == "http"
    assert config.credentials.secret_id == "AKIDEXAMPLE0123"
    assert config.credentials.secret_key_file == Path("/run/credentials/cvmkeeper/key")
    assert config.sentry.dsn is not None
    assert config.sentry.dsn.reveal() == "https://cafe1234@o1.ingest.sentry.io/1"
    assert config.sentry.environment == "production"


def test_an_empty_mapping_is_all_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "{}\n"))
    assert config.image_quota is None  # no cap: the account's own quota
    assert config.offline_quota == 10
    assert config.on_quota_full == "evict"
    assert config.cloud.endpoint is None and config.cloud.scheme == "https"
    assert config.credentials.secret_id is None and config.credentials.cvm_role
    assert config.sentry.dsn is None
    assert config.orphans.retention is None
    assert config.name_format.template == "{yy}{mm}{dd}-{HH}{MM}-{id}"


def test_the_dsn_key_never_appears_in_reprs_or_errors(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ISSUE_EXAMPLE))
    assert "cafe1234" not in repr(config)
    assert "cafe1234" not in str(config.sentry)
    assert config.sentry.redacted_dsn() == "https://***@o1.ingest.sentry.io/1"
    bad = ISSUE_EXAMPLE.replace("https://cafe1234@", "ftp:cafe1234@")
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, bad))
    assert "cafe1234" not in str(info.value)
    assert "sentry.dsn: is not a Sentry DSN" in str(info.value)


def test_a_plain_secret_key_is_refused_without_echoing_it(tmp_path: Path) -> None:
    text = "credentials: {secret_id: AKIDEXAMPLE0123, secret_key: CANARY-s3cr3t-KEY}\n"
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    message = str(info.value)
    assert "CANARY" not in message
    assert "cvmkeeper.yaml:1:55: credentials.secret_key: a plain secret key" in message


def test_every_problem_of_the_file(tmp_path: Path) -> None:
    text = """\
        image_quota: 0
        image_qouta: 5
        on_quota_full: panic
        name_template: "{yyyy}-{mm}-{dd}-{HH}{MM}-{id}"
        cloud: {endpoint: "http://127.0.0.1:8765", schema: http}
        api: {rate_limits: {CreateImage: fast}, retries: {max_attempts: 0}}
        orphans: {keep_last: 2, keep_forever: true}
        metrics: {listen: everywhere}
        """
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    found = [f"{p.line}:{p.path}" for p in info.value.problems]
    assert found == [
        "1:image_quota",
        "2:image_qouta",
        "3:on_quota_full",
        "4:name_template",
        "5:cloud.endpoint",
        "5:cloud.schema",
        "6:api.rate_limits.CreateImage",
        "6:api.retries.max_attempts",
        "7:orphans.keep_forever",
        "8:metrics.listen",
    ]
    messages = str(info.value)
    assert "image_qouta: unknown key (did you mean image_quota?)" in messages
    assert "worst case is 24 characters" in messages
    assert "cloud.schema: unknown key (did you mean scheme?)" in messages


def test_orphan_rules_and_api_settings(tmp_path: Path) -> None:
    text = """\
        orphans: {keep_within: 90d}
        api:
          rate_limits: {DescribeImages: 20}
          retries: {max_attempts: 3, base_seconds: 0.5}
          wait_timeout: 30m
        sentry: {dsn_file: secrets/dsn, checkin_margin: 10m}
        state_dir: state
        """
    config = load_config(write(tmp_path, text))
    assert config.orphans.retention is not None
    assert config.orphans.retention.keep_within == timedelta(days=90)
    assert config.api.rate_limits == (("DescribeImages", 20.0),)
    assert config.api.retries.max_attempts == 3
    assert config.api.retries.base_seconds == 0.5
    assert config.api.wait_timeout == timedelta(minutes=30)
    assert config.sentry.dsn_file == (tmp_path / "secrets" / "dsn").resolve()
    assert config.state_dir == (tmp_path / "state").resolve()


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)


def test_a_fifo_as_the_config_is_refused_without_blocking(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "cvmkeeper.yaml"
    os.mkfifo(fifo)  # no writer ever opens it: reading it would wait forever
    with pytest.raises(ConfigError) as info:
        load_setup(fifo)
    assert [str(p) for p in info.value.problems] == [
        f"{fifo}: is a FIFO (named pipe), not a regular file; refused"
    ]


def test_config_path_order(tmp_path: Path) -> None:
    assert config_path("given.yaml", {CONFIG_ENV: "env.yaml"}) == Path("given.yaml")
    assert config_path(None, {CONFIG_ENV: "env.yaml"}) == Path("env.yaml")
    assert config_path(None, {}) == DEFAULT_CONFIG_PATH


def test_setup_uses_config_defaults_for_policies(tmp_path: Path) -> None:
    policies = tmp_path / "p"
    policies.mkdir()
    (policies / "one.yaml").write_text(
        "name: one\ntargets: {tags: {a: b}}\nschedules: [{every: 1h}]\nretention: {keep_last: 2}\n"
    )
    path = write(tmp_path, "policies_dir: p\nregions: [ap-beijing]\non_quota_full: skip\n")
    setup = load_setup(path)
    [policy] = setup.policies
    assert policy.regions == ("ap-beijing",)
    assert policy.on_quota_full == "skip"
    assert setup.policy("one") is policy and setup.policy("two") is None


def test_the_sample_config_and_policies_load() -> None:
    setup = load_setup(ROOT / "config" / "cvmkeeper.yaml")
    assert setup.config.cloud.endpoint == "127.0.0.1:8765"
    assert setup.config.cloud.scheme == "http"
    assert setup.config.policies_dir == (ROOT / "policies").resolve()
    assert len(setup.policies) == 3


# --- issue 19: trust ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "endpoint",
    [
        "cvm.tencentcloudapi.com",
        "10.0.0.5:8765",
        "proxy.example.com:3128",
        "127.0.0.1.evil.com:80",
        None,
    ],
)
def test_http_to_another_host_is_refused_with_file_line_and_key(
    tmp_path: Path, endpoint: str | None
) -> None:
    where = f'endpoint: "{endpoint}", ' if endpoint else ""
    path = write(tmp_path, f"cloud: {{{where}scheme: http}}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    assert f"{path.name}:1:" in text or "cvmkeeper.yaml:1:" in text, text
    assert "cloud.scheme: http to" in text and "allow_insecure_http" in text, text


@pytest.mark.parametrize(
    "endpoint", ["127.0.0.1:8765", "127.9.9.9:1", "localhost:80", "cvm.tencentcloudapi.com"]
)
def test_http_to_loopback_or_explicitly_allowed_is_accepted(tmp_path: Path, endpoint: str) -> None:
    allowed = endpoint == "cvm.tencentcloudapi.com"
    extra = ", allow_insecure_http: true" if allowed else ""
    text = f'cloud: {{endpoint: "{endpoint}", scheme: http{extra}}}\n'
    config = load_config(write(tmp_path, text))
    assert config.cloud.scheme == "http"


def test_a_plain_dsn_in_a_world_readable_config_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, ISSUE_EXAMPLE)
    path.chmod(0o644)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    assert "sentry.dsn: a plain DSN in a config file that every user can read (mode 0644)" in text
    assert "cafe1234" not in text
    path.chmod(0o640)
    assert load_config(path).sentry.dsn is not None


def test_key_files_can_live_in_the_systemd_credentials_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = (
        "credentials: {secret_id: AKIDEXAMPLE0123, "
        "secret_key_file: '${CREDENTIALS_DIRECTORY}/secret_key'}\n"
        "sentry: {dsn_file: $CREDENTIALS_DIRECTORY/sentry_dsn}\n"
    )
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "creds"))
    config = load_config(write(tmp_path, text))
    assert config.credentials.secret_key_file == tmp_path / "creds" / "secret_key"
    assert config.sentry.dsn_file == tmp_path / "creds" / "sentry_dsn"
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    config = load_config(write(tmp_path, text))
    assert config.credentials.secret_key_file == Path(
        "/run/credentials/cvmkeeper.service/secret_key"
    )


def test_the_generated_config_points_key_files_at_the_credentials_directory() -> None:
    from cvmkeeper.cli.config_cmd import CONFIG_TEMPLATE, template_text

    text = template_text(CONFIG_TEMPLATE)
    assert "secret_key_file: ${CREDENTIALS_DIRECTORY}/secret_key" in text
    assert "dsn_file: ${CREDENTIALS_DIRECTORY}/sentry_dsn" in text
    assert "/etc/cvmkeeper/credentials" not in text


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('cloud: {endpoint: "127.0.0.1:99999", scheme: http}\n', "cloud.endpoint"),
        ('cloud: {endpoint: "localhost:0", scheme: http}\n', "cloud.endpoint"),
    ],
)
def test_a_port_out_of_range_is_a_problem_not_an_overflow(
    tmp_path: Path, text: str, key: str
) -> None:
    with pytest.raises(ConfigError, match=rf"{key}: port \d+ is not between 1 and 65535"):
        load_config(write(tmp_path, text))
