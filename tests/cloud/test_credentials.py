"""The credential chain: order, refusals, one clear error, and a key that never shows."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cvmkeeper.cloud.credentials import (
    Credentials,
    CredentialsConfig,
    CredentialsError,
    CredentialsNotFoundError,
    CvmRoleCredentials,
    resolve_credentials,
)

CANARY = "CANARY-key-7f3a9b1c"


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/latest/meta-data/cam/security-credentials/"


@pytest.fixture
def places(tmp_path: Path) -> dict[str, Path]:
    home = tmp_path / "home"
    home.mkdir()
    creds_dir = tmp_path / "creds"
    creds_dir.mkdir()
    return {"home": home, "creds": creds_dir, "system": tmp_path / "etc-credentials"}


def resolve(
    places: dict[str, Path], env: dict[str, str], config: CredentialsConfig | None = None
) -> Credentials | CvmRoleCredentials:
    config = config or CredentialsConfig(metadata_url=closed_port_url())
    return resolve_credentials(
        config, env=env, home=places["home"], system_file=places["system"], metadata_timeout=0.5
    )


def write_ini(path: Path, secret_id: str, key: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"[default]\nsecret_id = {secret_id}\nsecret_key = {key}\n")


def test_order_explicit_then_credentials_directory_then_env_then_files(
    places: dict[str, Path], tmp_path: Path
) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(CANARY + "\n")
    (places["creds"] / "secret_id").write_text("AKID-dir")
    (places["creds"] / "secret_key").write_text("dir-key")
    write_ini(places["home"] / ".tencentcloud" / "credentials", "AKID-home", "home-key")
    write_ini(places["system"], "AKID-etc", "etc-key")
    env = {
        "CREDENTIALS_DIRECTORY": str(places["creds"]),
        "TENCENTCLOUD_SECRET_ID": "AKID-env",
        "TENCENTCLOUD_SECRET_KEY": "env-key",
    }
    explicit = CredentialsConfig(
        secret_id="AKID-cfg", secret_key_file=key_file, metadata_url=closed_port_url()
    )

    found = resolve(places, env, explicit)
    assert found.get_credential_info() == ("AKID-cfg", CANARY, None)

    assert resolve(places, env).get_credential_info()[:2] == ("AKID-dir", "dir-key")
    del env["CREDENTIALS_DIRECTORY"]
    assert resolve(places, env).get_credential_info()[:2] == ("AKID-env", "env-key")
    del env["TENCENTCLOUD_SECRET_ID"]
    assert resolve(places, env).get_credential_info()[:2] == ("AKID-home", "home-key")
    (places["home"] / ".tencentcloud" / "credentials").unlink()
    found = resolve(places, env)
    assert found.get_credential_info()[:2] == ("AKID-etc", "etc-key")
    assert found.source == str(places["system"])


def test_credentials_directory_token_is_used(places: dict[str, Path]) -> None:
    (places["creds"] / "secret_id").write_text("AKID-dir\n")
    (places["creds"] / "secret_key").write_text("k\n")
    (places["creds"] / "token").write_text("tok\n")
    found = resolve(places, {"CREDENTIALS_DIRECTORY": str(places["creds"])})
    assert found.get_credential_info() == ("AKID-dir", "k", "tok")


def test_half_a_credentials_directory_is_an_error(places: dict[str, Path]) -> None:
    (places["creds"] / "secret_id").write_text("AKID-dir")
    with pytest.raises(CredentialsError, match="only one of 'secret_id' and 'secret_key'"):
        resolve(places, {"CREDENTIALS_DIRECTORY": str(places["creds"])})


def test_nothing_found_names_every_place(places: dict[str, Path]) -> None:
    with pytest.raises(CredentialsNotFoundError) as caught:
        resolve(places, {})
    message = str(caught.value)
    assert "secret_id + secret_key_file" in message
    assert "$CREDENTIALS_DIRECTORY" in message
    assert "TENCENTCLOUD_SECRET_ID" in message
    assert str(places["home"] / ".tencentcloud" / "credentials") in message
    assert str(places["system"]) in message
    assert "CVM role via http://127.0.0.1:" in message
    assert "TKE_REGION" not in message
    assert len(caught.value.looked_at) == 6


def test_plain_secret_key_in_config_is_refused_without_echoing_it() -> None:
    with pytest.raises(CredentialsError) as caught:
        CredentialsConfig.from_mapping(
            {"secret_id": "AKID", "secret_key": CANARY}, origin="/etc/cvmkeeper/config.yaml"
        )
    assert "/etc/cvmkeeper/config.yaml: key 'secret_key'" in str(caught.value)
    assert CANARY not in str(caught.value)


def test_config_mapping_reads_the_key_file(tmp_path: Path, places: dict[str, Path]) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(CANARY)
    config = CredentialsConfig.from_mapping(
        {"secret_id": "AKID", "secret_key_file": str(key_file), "cvm_role": False}
    )
    assert resolve(places, {}, config).get_credential_info() == ("AKID", CANARY, None)


def test_secret_id_without_key_file_is_an_error(places: dict[str, Path]) -> None:
    with pytest.raises(CredentialsError, match="'secret_key_file' is missing"):
        resolve(places, {}, CredentialsConfig(secret_id="AKID"))


def test_missing_key_file_is_named(tmp_path: Path, places: dict[str, Path]) -> None:
    config = CredentialsConfig(secret_id="AKID", secret_key_file=tmp_path / "nope")
    with pytest.raises(CredentialsError, match=str(tmp_path / "nope")):
        resolve(places, {}, config)


def test_broken_ini_error_does_not_quote_the_line(places: dict[str, Path]) -> None:
    path = places["home"] / ".tencentcloud" / "credentials"
    path.parent.mkdir()
    path.write_text(f"secret_key = {CANARY}\n")  # no section header
    with pytest.raises(CredentialsError) as caught:
        resolve(places, {})
    assert str(path) in str(caught.value)
    assert CANARY not in str(caught.value)


def test_repr_and_str_hide_the_key() -> None:
    creds = Credentials("AKID-visible", CANARY, token=CANARY + "-token", source="test")
    for text in (repr(creds), str(creds), f"{creds}", repr([creds])):
        assert CANARY not in text
        assert "AKID-visible" in text


@pytest.fixture
def metadata_server() -> Iterator[str]:
    """A CVM metadata service on loopback that hands out one role's temporary key."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            base = "/latest/meta-data/cam/security-credentials/"
            if self.path == base:
                body = b"backup-role"
            elif self.path == base + "backup-role":
                body = json.dumps(
                    {
                        "Code": "Success",
                        "TmpSecretId": "AKID-tmp",
                        "TmpSecretKey": CANARY,
                        "Token": "tok",
                        "ExpiredTime": 4_000_000_000,
                    }
                ).encode()
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/latest/meta-data/cam/security-credentials/"
    finally:
        server.shutdown()
        server.server_close()


def test_cvm_role_is_the_last_resort(places: dict[str, Path], metadata_server: str) -> None:
    found = resolve(places, {}, CredentialsConfig(metadata_url=metadata_server))
    assert isinstance(found, CvmRoleCredentials)
    assert found.get_credential_info() == ("AKID-tmp", CANARY, "tok")
    assert CANARY not in repr(found)


def test_cvm_role_can_be_disabled(places: dict[str, Path], metadata_server: str) -> None:
    config = CredentialsConfig(metadata_url=metadata_server, cvm_role=False)
    with pytest.raises(CredentialsNotFoundError, match="CVM role \\(disabled"):
        resolve(places, {}, config)


@pytest.mark.parametrize(
    ("mode", "warned"),
    [(0o600, False), (0o400, False), (0o640, True), (0o644, True), (0o604, True)],
)
def test_a_key_file_others_can_read_is_warned_about(
    tmp_path: Path,
    places: dict[str, Path],
    caplog: pytest.LogCaptureFixture,
    mode: int,
    warned: bool,
) -> None:
    """issue 19: a SecretKey file readable by group or others gets a warning (not its key)."""
    key_file = tmp_path / "key"
    key_file.write_text(CANARY)
    key_file.chmod(mode)
    config = CredentialsConfig.from_mapping(
        {"secret_id": "AKID", "secret_key_file": str(key_file), "cvm_role": False}
    )
    with caplog.at_level("WARNING"):
        resolve(places, {}, config)
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert bool(warnings) == warned, caplog.text
    if warned:
        assert str(key_file) in caplog.text and f"{mode:04o}" in caplog.text
    assert CANARY not in caplog.text
