"""Requests signed the way other official SDKs sign them are accepted (issue #18).

Tencent's Node.js SDK signs ``host:`` with the host name only (``url.hostname``) while it
sends ``Host: name:PORT``; the Python SDK signs the header as sent. The emulator accepts
both and still refuses a wrong signature. The last test drives the real Node.js SDK from
npm over HTTP, when node and the package can be had here.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from cvmkeeper.emulator.server import RunningEmulator
from emulator.sdk import GZ

NODE_SCRIPT = Path(__file__).with_name("node") / "describe_images.js"
NODE_PACKAGE = "tencentcloud-sdk-nodejs-cvm"
#: where the package is installed: outside the repository, kept between runs
NODE_PREFIX = Path(os.environ.get("CVMKEEPER_NODE_PREFIX", "/tmp/cvmkeeper-node-sdk"))


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def signed_post(
    emu: RunningEmulator, signed_host: str, *, secret_key: str | None = None
) -> dict[str, Any]:
    """POST DescribeImageQuota to ``emu`` signed over ``host:<signed_host>`` (TC3, by hand).

    Written out here rather than taken from the emulator, so that the test checks the
    emulator against the algorithm as the SDKs implement it.
    """
    body = json.dumps({}).encode()
    timestamp = int(time.time())
    date = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")
    content_type = "application/json; charset=utf-8"
    canonical = "\n".join(
        [
            "POST",
            "/",
            "",
            f"content-type:{content_type}\nhost:{signed_host}\n",
            "content-type;host",
            hashlib.sha256(body).hexdigest(),
        ]
    )
    scope = f"{date}/cvm/tc3_request"
    to_sign = "\n".join(
        [
            "TC3-HMAC-SHA256",
            str(timestamp),
            scope,
            hashlib.sha256(canonical.encode()).hexdigest(),
        ]
    )
    key = _hmac(
        _hmac(_hmac(f"TC3{secret_key or emu.secret_key}".encode(), date), "cvm"), "tc3_request"
    )
    sig = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": content_type,
        "Authorization": f"TC3-HMAC-SHA256 Credential={emu.secret_id}/{scope}, "
        f"SignedHeaders=content-type;host, Signature={sig}",
        "X-TC-Action": "DescribeImageQuota",
        "X-TC-Timestamp": str(timestamp),
        "X-TC-Version": "2017-03-12",
        "X-TC-Region": GZ,
    }
    answer = requests.post(f"http://{emu.endpoint}/", data=body, headers=headers, timeout=10)
    response: dict[str, Any] = answer.json()["Response"]
    return response


def test_host_signed_with_its_port_is_accepted(emu: RunningEmulator) -> None:
    assert emu.endpoint.startswith("127.0.0.1:")
    assert signed_post(emu, emu.endpoint)["ImageNumQuota"] == 10


def test_host_signed_without_its_port_is_accepted(emu: RunningEmulator) -> None:
    """What the Node.js SDK sends: ``host:127.0.0.1`` signed, ``127.0.0.1:PORT`` sent."""
    assert signed_post(emu, "127.0.0.1")["ImageNumQuota"] == 10


@pytest.mark.parametrize("host", ["127.0.0.2", "localhost", "127.0.0.1:1", "127.0.0.1:"])
def test_host_signed_as_another_host_is_refused(emu: RunningEmulator, host: str) -> None:
    assert signed_post(emu, host)["Error"]["Code"] == "AuthFailure.SignatureFailure"


def test_wrong_key_is_refused_with_or_without_port(emu: RunningEmulator) -> None:
    for host in (emu.endpoint, "127.0.0.1"):
        answer = signed_post(emu, host, secret_key="not-the-key")
        assert answer["Error"]["Code"] == "AuthFailure.SignatureFailure"


def _node_sdk() -> Path:
    """The installed package's folder, installing it from npm on first use; or skip."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are not installed: the Node.js SDK test cannot run")
    package = NODE_PREFIX / "node_modules" / NODE_PACKAGE
    if not package.is_dir():
        NODE_PREFIX.mkdir(parents=True, exist_ok=True)
        try:
            done = subprocess.run(
                [
                    npm,
                    "install",
                    "--no-audit",
                    "--no-fund",
                    "--fetch-retries=1",  # no registry here: fail in seconds, then skip
                    "--fetch-timeout=20000",
                    "--prefix",
                    str(NODE_PREFIX),
                    NODE_PACKAGE,
                ],
                capture_output=True,
                text=True,
                timeout=180,
                check=False,
            )
        except subprocess.TimeoutExpired:
            pytest.skip(f"npm install {NODE_PACKAGE} took more than 180 s (no registry?)")
        if done.returncode != 0 or not package.is_dir():
            pytest.skip(f"npm install {NODE_PACKAGE} failed: {done.stderr.strip()[-300:]}")
    return NODE_PREFIX / "node_modules"


def test_node_sdk_describes_images_over_http(emu: RunningEmulator) -> None:
    """Tencent's Node.js SDK (from npm) lists the images of the base fleet.

    The SDK derives the TC3 service from the endpoint's first label, so it is pointed at
    ``cvm.tencentcloudapi.com:PORT`` over plain HTTP with a lookup that answers 127.0.0.1:
    nothing leaves the machine, and the Host it signs is a name without its port.
    """
    modules = _node_sdk()
    done = subprocess.run(
        [shutil.which("node") or "node", str(NODE_SCRIPT)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={
            **os.environ,
            "NODE_PATH": str(modules),
            "EMULATOR_PORT": str(emu.port),
            "EMULATOR_REGION": GZ,
            "TC_SECRET_ID": emu.secret_id,
            "TC_SECRET_KEY": emu.secret_key,
        },
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    names = {image["ImageName"] for image in answer["ImageSet"]}
    assert {"golden-base", "shared-base"} <= names
    assert answer["TotalCount"] == len(answer["ImageSet"]) == 3
    assert emu.core.state()["calls"]["DescribeImages"] == 1
    assert "AuthFailure.SignatureFailure" not in emu.core.state()["errors"]
