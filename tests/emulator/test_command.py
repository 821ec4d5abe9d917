"""``cvmkeeper emulator`` and the demo as real processes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from tencentcloud.common import credential
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.cvm.v20170312 import cvm_client, models

from cvmkeeper.emulator.fleet import load_fleet
from emulator.sdk import create, request

FLEETS = Path(__file__).parent / "fleets"
REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.mark.slow
def test_command_prints_its_line_serves_and_exits_zero_on_sigterm(tmp_path: Path) -> None:
    state_file = tmp_path / "state.json"
    process = subprocess.Popen(
        [
            str(BIN / "cvmkeeper"),
            "emulator",
            "--fleet",
            str(FLEETS / "small.yaml"),
            "--port",
            "0",
            "--state-file",
            str(state_file),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("listening on http://127.0.0.1:")
        endpoint = line.strip().removeprefix("listening on http://")
        fleet = load_fleet(FLEETS / "small.yaml")
        client = cvm_client.CvmClient(
            credential.Credential(fleet.credentials.secret_id, fleet.credentials.secret_key),
            "ap-guangzhou",
            ClientProfile(httpProfile=HttpProfile(protocol="http", endpoint=endpoint)),
        )
        image_id = create(client, "ins-6pb6lrmy", "from-subprocess")
        found = client.DescribeImages(request(models.DescribeImagesRequest, ImageIds=[image_id]))
        assert found.TotalCount == 1
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert process.stdout.read() == ""  # exactly one line
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)
    saved = state_file.read_text()
    assert "small-secret-key" not in saved
    names = {i["name"] for r in json.loads(saved)["regions"] for i in r["images"]}
    assert names == {"golden-base", "from-subprocess"}
