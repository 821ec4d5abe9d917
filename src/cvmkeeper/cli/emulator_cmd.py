"""``cvmkeeper emulator``: serve the CVM API emulator, or read one through the real SDK.

``cvmkeeper emulator --fleet FILE`` prints exactly one line, ``listening on
http://127.0.0.1:PORT``, then serves until SIGTERM/SIGINT and exits 0. Its control
endpoints (``/_emulator/*``) want the token of ``$CVMKEEPER_EMULATOR_TOKEN`` in the
``X-Emulator-Token`` header; without that variable a random token is made and printed to
stderr.
``cvmkeeper emulator inventory --endpoint 127.0.0.1:PORT --fleet FILE`` prints what the
official Tencent Cloud SDK sees there (quota, instances, images), as the demo does.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import click
from tencentcloud.common import credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.cvm.v20170312 import cvm_client, models

from cvmkeeper.emulator.clock import SystemClock
from cvmkeeper.emulator.core import EmulatorCore
from cvmkeeper.emulator.fleet import FleetError, FleetSpec, load_fleet
from cvmkeeper.emulator.http import CONTROL_TOKEN_ENV, CONTROL_TOKEN_HEADER
from cvmkeeper.emulator.profiles import env_profile
from cvmkeeper.emulator.server import RunningEmulator

_FLEET = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.group("emulator", invoke_without_command=True)
@click.option(
    "--fleet",
    "fleet_path",
    type=_FLEET,
    help="Fleet YAML file to seed the account. Its 'profile:' (documented | pessimistic) "
    "defaults to $CVMKEEPER_EMULATOR_PROFILE, else documented.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="TCP port on 127.0.0.1 (0 picks a free one).",
)
@click.option(
    "--state-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="JSON state file: loaded at start if it exists, written at exit.",
)
@click.pass_context
def emulator(
    ctx: click.Context, fleet_path: Path | None, port: int, state_file: Path | None
) -> None:
    """Serve a Tencent Cloud CVM API emulator on 127.0.0.1 for tests and the demo."""
    if ctx.invoked_subcommand is not None:
        return
    if fleet_path is None:
        raise click.UsageError("--fleet FILE is required to start the emulator")
    fleet = _load(fleet_path)
    clock = SystemClock()
    if state_file is not None and state_file.exists():
        core = EmulatorCore.load(state_file, clock, fleet)
    else:
        core = EmulatorCore(fleet, clock)
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    token = os.environ.get(CONTROL_TOKEN_ENV) or None
    server = RunningEmulator(core, port=port, control_token=token)
    if token is None:  # the caller did not choose one: say where to find it (stderr only)
        print(
            f"control token (header {CONTROL_TOKEN_HEADER}): {server.control_token}",
            file=sys.stderr,
            flush=True,
        )
    try:
        print(f"listening on {server.url}", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
        if state_file is not None:
            core.save(state_file)


@click.command("inventory")
@click.option("--endpoint", required=True, help="Emulator address, 127.0.0.1:PORT (no scheme).")
@click.option(
    "--fleet",
    "fleet_path",
    type=_FLEET,
    required=True,
    help="The fleet file the emulator serves (regions and key pair).",
)
@click.option("--region", "regions", multiple=True, help="Only these regions (repeatable).")
def inventory(endpoint: str, fleet_path: Path, regions: tuple[str, ...]) -> None:
    """Print each region's quota, instances and images as the official SDK reads them."""
    fleet = _load(fleet_path)
    cred = credential.Credential(fleet.credentials.secret_id, fleet.credentials.secret_key)
    profile = ClientProfile(
        httpProfile=HttpProfile(protocol="http", endpoint=endpoint, reqTimeout=10)
    )
    for region in regions or tuple(fleet.regions):
        client = cvm_client.CvmClient(cred, region, profile)
        try:
            quota = client.DescribeImageQuota(models.DescribeImageQuotaRequest()).ImageNumQuota
            instances = _all_pages(
                client.DescribeInstances, models.DescribeInstancesRequest, "InstanceSet"
            )
            images = _all_pages(
                client.DescribeImages,
                models.DescribeImagesRequest,
                "ImageSet",
                Filters=[{"Name": "image-type", "Values": ["PRIVATE_IMAGE"]}],
            )
        except TencentCloudSDKException as exc:
            raise click.ClickException(f"{region}: {exc.get_code()}: {exc.get_message()}") from None
        click.echo(
            f"region {region}: {len(images)}/{quota} custom images, {len(instances)} instances"
        )
        for inst in instances:
            tags = ", ".join(f"{t.Key}={t.Value}" for t in inst.Tags or []) or "-"
            click.echo(
                f"  instance {inst.InstanceId:<14} {inst.InstanceName:<16} "
                f"{inst.InstanceState:<9} {inst.Placement.Zone:<16} tags: {tags}"
            )
            for disk in inst.DataDisks or []:
                click.echo(f"    data disk {disk.DiskId} {disk.DiskType} {disk.DiskSize} GiB")
        for image in images:
            click.echo(
                f"  image    {image.ImageId:<14} {image.ImageName:<20} "
                f"{image.ImageState:<12} {image.CreatedTime}"
            )


emulator.add_command(inventory)


def _all_pages(method: Any, request_type: Any, set_name: str, **fields: Any) -> list[Any]:
    """Call a Describe* method with Offset/Limit=100 until every item is read."""
    items: list[Any] = []
    for _ in range(1000):  # bounded: 100 000 items is far beyond any region
        request = request_type()
        request._deserialize({**fields, "Offset": len(items), "Limit": 100})
        response = method(request)
        page = getattr(response, set_name) or []
        items.extend(page)
        if not page or len(items) >= response.TotalCount:
            break
    return items


def _load(path: Path) -> FleetSpec:
    try:
        return load_fleet(path, default_profile=env_profile())
    except FleetError as exc:
        raise click.ClickException(str(exc)) from None
