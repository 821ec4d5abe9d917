"""A canary secret key never reaches a log line, stderr/stdout, a repr or an exception."""

from __future__ import annotations

import logging
import sys
from typing import Any

import pytest

from cvmkeeper.cloud.client import CloudClient
from cvmkeeper.cloud.credentials import Credentials
from cvmkeeper.cloud.errors import CloudError
from cvmkeeper.cloud.models import CreateImageRequest
from cvmkeeper.cloud.retry import RetryPolicy
from cvmkeeper.cloud.transport import EndpointConfig
from cvmkeeper.emulator.server import running_emulator

from .conftest import fleet_mapping

CANARY = "CANARY-secret-5d41402abc4b2a76"
GZ = "ap-guangzhou"


@pytest.mark.slow
def test_canary_key_is_absent_from_all_output_of_a_faulty_run(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, the SDK's debug request dumps included
    stderr_handler = logging.StreamHandler(sys.stderr)
    stderr_handler.setLevel(logging.DEBUG)
    logging.getLogger().addHandler(stderr_handler)
    texts: list[str] = []
    fleet = fleet_mapping(credentials={"secret_id": "AKIDCANARY", "secret_key": CANARY})
    policy = RetryPolicy(max_attempts=4, base_seconds=0.01, cap_seconds=0.05)
    try:
        with running_emulator(fleet) as emu:
            creds = Credentials(emu.secret_id, CANARY, source="test")
            endpoint = EndpointConfig(emu.endpoint, "http", 5)
            client = CloudClient.over_http(creds, endpoint, retry_policy=policy)
            texts += [repr(creds), str(creds), repr(client.transport)]
            emu.core.set_faults(
                {
                    action: {"InternalError": 0.3, "reset": 0.2, "lost_response": 0.2}
                    for action in (
                        "CreateImage",
                        "DescribeImages",
                        "DescribeImageQuota",
                        "DeleteImages",
                    )
                }
            )
            for n in range(6):
                try:
                    client.create_image(GZ, CreateImageRequest(f"c-{n}", f"ins-{n:04d}"))
                    client.list_images(GZ)
                    client.image_quota(GZ)
                    client.delete_images(GZ, ["img-missing"])
                except CloudError as error:
                    texts += [str(error), repr(error), error.message]
            # a second client whose key is refused: the server's answer must not echo it
            wrong = CloudClient.over_http(Credentials(emu.secret_id, CANARY[::-1]), endpoint)
            with pytest.raises(CloudError) as refused:
                wrong.image_quota(GZ)
            texts += [str(refused.value), repr(refused.value)]
            assert emu.core.state()["errors"]  # the run really was faulty
    finally:
        logging.getLogger().removeHandler(stderr_handler)
    out, err = capfd.readouterr()
    assert "retrying" in caplog.text  # our retries were logged
    assert "SendRequest" in caplog.text  # and so were the SDK's request dumps
    for where, text in (
        ("caplog", caplog.text),
        ("stdout", out),
        ("stderr", err),
        ("exceptions/reprs", "\n".join(texts)),
    ):
        assert CANARY not in text, f"canary secret found in {where}"
        assert CANARY[::-1] not in text, f"refused secret found in {where}"


# --- issue 19: every command's output, whatever a proxy or the API echoes ------------------

TOKEN = "TOKEN-canary-7e57a1b2c3d4e5f6"


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--no-alerts"],
        ["run", "--no-alerts", "--json"],
        ["status", "--json"],
        ["status"],
        ["images"],
        ["plan"],
        ["validate", "--online"],
    ],
)
def test_no_command_prints_what_a_proxy_echoes(tmp_path: Any, argv: list[str]) -> None:
    from click.testing import CliRunner

    from cvmkeeper.cli import cli
    from support.echo_proxy import echo_proxy

    credentials = tmp_path / "creds"
    credentials.mkdir()
    (credentials / "secret_id").write_text("AKIDCANARY0000000000000000000000001234")
    (credentials / "secret_key").write_text(CANARY)
    (credentials / "token").write_text(TOKEN)
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "web.yaml").write_text(
        "name: web\ntargets: {instance_ids: [ins-00000001]}\nschedules: [{every: 1h}]\n"
        "retention: {keep_last: 3}\n"
    )
    with echo_proxy() as endpoint:
        (tmp_path / "cvmkeeper.yaml").write_text(
            f"regions: [{GZ}]\ncloud: {{endpoint: '{endpoint}', scheme: http}}\n"
            f"credentials: {{cvm_role: false}}\nstate_dir: {tmp_path / 'state'}\n"
            "api: {retries: {max_attempts: 1}}\n"
        )
        result = CliRunner(env={"CREDENTIALS_DIRECTORY": str(credentials)}).invoke(
            cli, [*argv, "--config", str(tmp_path / "cvmkeeper.yaml")]
        )
    output = result.output
    assert result.exit_code in (1, 2), output
    assert "Traceback" not in output
    assert "AuthFailure" in output or "proxy refused" in output, output  # the error is shown
    for leaked in (CANARY, TOKEN, "\x1b", "\u202e", "\u200b", "\r", "\x07"):
        assert leaked not in output, f"{leaked!r} reached the output of {argv}:\n{output}"
    assert not any(line.startswith(("FORGED", "<6>")) for line in output.splitlines()), output
