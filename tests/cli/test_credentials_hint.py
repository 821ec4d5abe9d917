"""An administrator's command on the daemon's host: without credentials it says what was
tried and what to do; doing that (pointing $CREDENTIALS_DIRECTORY at the key files the
service loads with LoadCredential=) works, over real HTTP against the emulator."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests/ helpers

from cvmkeeper.cli import cli
from cvmkeeper.cli.credentials_hint import credentials_hint
from cvmkeeper.cloud.credentials import CredentialsError, CredentialsNotFoundError
from executor.world import REGION, SECRET_ID, SECRET_KEY, fleet, policy, world


def clean_env(home: Path, **extra: str) -> dict[str, str | None]:
    """No credentials in the environment, a HOME without ~/.tencentcloud."""
    env: dict[str, str | None] = {
        "TENCENTCLOUD_SECRET_ID": None,
        "TENCENTCLOUD_SECRET_KEY": None,
        "TENCENTCLOUD_SESSION_TOKEN": None,
        "CREDENTIALS_DIRECTORY": None,
        "HOME": str(home),
    }
    return env | extra


def test_no_credentials_names_the_sources_and_the_way_that_works(tmp_path: Path) -> None:
    with world(tmp_path, fleet(), policy()) as w:
        document = yaml.safe_load(w.config_path.read_text())
        document["credentials"] = {"cvm_role": False}  # as the root shell sees it
        w.config_path.write_text(yaml.safe_dump(document))
        result = CliRunner().invoke(
            cli, ["status", "--config", str(w.config_path)], env=clean_env(tmp_path)
        )
        assert result.exit_code == 2
        err = result.stderr
        assert "status: no Tencent Cloud credentials found; looked at, in order:" in err
        assert "hint: the daemon gets its keys from systemd (LoadCredential=)" in err
        assert "CREDENTIALS_DIRECTORY=/etc/cvmkeeper/credentials cvmkeeper status" in err

        # Doing what the hint says: the same files the unit's LoadCredential= lines name.
        keys = tmp_path / "credentials"
        keys.mkdir(mode=0o700)
        (keys / "secret_id").write_text(SECRET_ID + "\n")
        (keys / "secret_key").write_text(SECRET_KEY + "\n")
        for name in ("secret_id", "secret_key"):
            (keys / name).chmod(0o600)
        fixed = CliRunner().invoke(
            cli,
            ["status", "--config", str(w.config_path), "--json"],
            env=clean_env(tmp_path, CREDENTIALS_DIRECTORY=str(keys)),
        )
        assert fixed.exit_code in (0, 1), fixed.output  # read; 1: nothing backed up yet
        assert '"region": "' + REGION + '"' in fixed.stdout
        assert '"error": null' in fixed.stdout
        assert SECRET_KEY not in fixed.output


def test_the_hint_says_when_the_documented_directory_exists(tmp_path: Path) -> None:
    error = CredentialsNotFoundError(["the config", "$CREDENTIALS_DIRECTORY (unset)"])
    lines = credentials_hint(error, "images", environ={}, directory=tmp_path)
    assert lines[1] == f"  {tmp_path} exists: as a user who can read it (root), run"
    assert lines[2] == f"    CREDENTIALS_DIRECTORY={tmp_path} cvmkeeper images"
    assert credentials_hint(error, "images", environ={"CREDENTIALS_DIRECTORY": "/x"}) == []
    assert credentials_hint(CredentialsError("bad key file"), "images", environ={}) == []
