"""README.md is true: its runnable commands work, its shown outputs are real, its references
are complete and its table of contents leads somewhere.

How blocks are marked is described in ``tests/docs/readme.py``. The runnable blocks run in
document order, in one sandbox directory holding copies of ``config/``, ``policies/`` and
``systemd/``, against one emulator serving ``config/fleet-demo.yaml`` on a free port. The
README's emulator address ``127.0.0.1:8765`` (the one the README tells a reader to start)
stands for that port: it is replaced in the blocks and in the sandbox's
``config/demo.yaml``, as ``make demo`` does. ``HOME`` is the sandbox, so completion
scripts written to ``~`` stay in it.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cvmkeeper.config import daemon_file, load_setup, policy_file
from cvmkeeper.emulator.server import running_emulator
from docs.readme import README, REPO, Block, blocks, normalise

BIN = Path(sys.executable).parent
README_ENDPOINT = "127.0.0.1:8765"
KNOWN_MARKERS = {"runnable", "output", "demo-output", "policy-example"}
BLOCK_TIMEOUT = 120


def readme_blocks() -> list[Block]:
    """The README's fenced blocks."""
    return blocks(README.read_text(encoding="utf-8"))


def section(title: str) -> str:
    """The text of the README section whose heading is ``## {title}``."""
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def clean_env(home: Path) -> dict[str, str]:
    """The environment of a README command: the venv first on PATH, no user settings."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TENCENTCLOUD_", "SENTRY_", "CVMKEEPER_", "_CVMKEEPER_"))
        and key != "CREDENTIALS_DIRECTORY"
    }
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["HOME"] = str(home)
    return env


def test_markers_are_known_and_well_placed() -> None:
    found = readme_blocks()
    assert any(block.marker == "runnable" for block in found)
    previous: Block | None = None
    for block in found:
        where = f"README.md:{block.line}"
        assert block.marker is None or block.marker in KNOWN_MARKERS, where
        if block.marker == "runnable":
            assert block.language == "sh", where
        if block.marker in ("output", "demo-output"):
            assert block.language == "text", where
        if block.marker == "output":
            assert previous is not None and previous.marker == "runnable", where
        previous = block


def test_contents_links_lead_to_headings() -> None:
    text = README.read_text(encoding="utf-8")
    anchors = set()
    for heading in re.findall(r"^##+ (.+)$", text, re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        anchors.add(slug)
    links = re.findall(r"\]\(#([^)]+)\)", text)
    assert len(links) >= 15
    missing = sorted(set(links) - anchors)
    assert not missing, f"links to no heading: {missing}"
    contents = section("Contents")
    headings = [h for h in re.findall(r"^## (.+)$", text, re.MULTILINE) if h != "Contents"]
    for heading in headings:
        assert f"[{heading}]" in contents, f"{heading!r} is not in the contents"


def test_policy_reference_names_every_key() -> None:
    table = section("Policy reference")
    keys = [
        *policy_file.POLICY_KEYS,
        *(f"targets.{key}" for key in policy_file.TARGET_KEYS),
        *(f"schedules[].{key}" for key in policy_file.SCHEDULE_KEYS),
        *(f"copies[].{key}" for key in policy_file.COPY_KEYS),
    ]
    for key in keys:
        pattern = rf"\| `{re.escape(key)}[`.\[]"
        assert re.search(pattern, table), f"policy key {key} is missing from the table"
    for key in policy_file.RETENTION_KEYS:
        assert f"`{key}`" in table or f"`retention.{key}`" in table, key


def test_daemon_config_reference_names_every_key() -> None:
    table = section("Daemon config reference")
    for key in daemon_file.CONFIG_KEYS:
        assert re.search(rf"\| `{key}[`.]", table), f"config key {key} is missing"
    groups = {
        "cloud": daemon_file.CLOUD_KEYS,
        "credentials": daemon_file.CREDENTIAL_KEYS,
        "sentry": daemon_file.SENTRY_KEYS,
        "api": daemon_file.API_KEYS,
    }
    for group, keys in groups.items():
        for key in keys:
            assert f"{group}.{key}" in table or f"`{key}`" in table, f"{group}.{key}"
    for key in daemon_file.RETRY_KEYS:
        assert key in table, f"api.retries.{key}"


def test_policy_example_is_a_valid_policy(tmp_path: Path) -> None:
    examples = [block for block in readme_blocks() if block.marker == "policy-example"]
    assert len(examples) == 1
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "example.yaml").write_text(examples[0].text, encoding="utf-8")
    config = tmp_path / "cvmkeeper.yaml"
    config.write_text("regions: [ap-guangzhou]\nimage_quota: 100\n", encoding="utf-8")
    setup = load_setup(config)
    policy = setup.policies[0]
    assert policy.name == "web-daily"
    assert policy.copies[0].region == "ap-shanghai"


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A directory like a checkout's, and an emulator serving the demo fleet."""
    for name in ("config", "policies", "systemd"):
        shutil.copytree(REPO / name, tmp_path / name)
    (tmp_path / "home").mkdir()
    with running_emulator(REPO / "config" / "fleet-demo.yaml") as emulator:
        demo = tmp_path / "config" / "demo.yaml"
        text = demo.read_text(encoding="utf-8")
        assert README_ENDPOINT in text
        demo.write_text(text.replace(README_ENDPOINT, emulator.endpoint), encoding="utf-8")
        yield tmp_path, emulator.endpoint


@pytest.mark.slow
@pytest.mark.wallclock
def test_runnable_blocks_run_and_show_their_real_output(sandbox: tuple[Path, str]) -> None:
    directory, endpoint = sandbox
    found = readme_blocks()
    runnable = [block for block in found if block.marker == "runnable"]
    assert len(runnable) >= 5
    outputs: dict[int, str] = {}
    for block in runnable:
        script = block.text.replace(README_ENDPOINT, endpoint)
        proc = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=directory,
            env=clean_env(directory / "home"),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=BLOCK_TIMEOUT,
            check=False,
        )
        assert proc.returncode == block.exit_code, (
            f"README.md:{block.line}: exit {proc.returncode}, not {block.exit_code}\n{proc.stdout}"
        )
        outputs[block.line] = proc.stdout
    checked = 0
    for previous, block in itertools.pairwise(found):
        if block.marker == "output":
            assert normalise(outputs[previous.line]) == normalise(block.text), (
                f"README.md:{block.line}: the shown output differs from the real one:\n"
                f"{outputs[previous.line]}"
            )
            checked += 1
    assert checked >= 3
    home = directory / "home"
    assert "complete -o nosort -F _cvmkeeper_completion cvmkeeper" in (
        home / ".cvmkeeper-complete.bash"
    ).read_text(encoding="utf-8")
    assert "#compdef cvmkeeper" in (home / ".cvmkeeper-complete.zsh").read_text(encoding="utf-8")
    assert (directory / "my-cvmkeeper" / "policies" / "web-daily.yaml").is_file()
