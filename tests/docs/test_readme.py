"""The documentation is true: README.md and every page of docs/ -- their runnable commands
work, their shown outputs are real, their references are complete and their links lead
somewhere.

How blocks are marked is described in ``tests/docs/readme.py``. Each page's runnable blocks
run in document order (a block may rely on what an earlier block of the same page did), in
one sandbox directory per page holding copies of ``config/``, ``policies/`` and
``systemd/``, against one emulator per page serving ``config/fleet-demo.yaml`` on a free
port. The pages' emulator address ``127.0.0.1:8765`` (the one they tell a reader to start)
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
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cvmkeeper.config import daemon_file, load_setup, policy_file
from cvmkeeper.emulator.server import running_emulator
from docs.readme import (
    DOCS,
    README,
    REPO,
    Block,
    blocks,
    headings,
    normalise,
    page_name,
    pages,
    section,
    slug,
)

BIN = Path(sys.executable).parent
README_ENDPOINT = "127.0.0.1:8765"
KNOWN_MARKERS = {"runnable", "output", "demo-output", "policy-example"}
BLOCK_TIMEOUT = 120
README_LIMIT = 10 * 1024
PAGES = pages()
PAGE_IDS = [page_name(path) for path in PAGES]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def page_blocks(path: Path) -> list[Block]:
    """The fenced blocks of one page."""
    return blocks(path.read_text(encoding="utf-8"))


def all_blocks() -> list[tuple[Path, Block]]:
    """Every fenced block of every page, with its page."""
    return [(path, block) for path in PAGES for block in page_blocks(path)]


def clean_env(home: Path) -> dict[str, str]:
    """The environment of a documented command: the venv first on PATH, no user settings."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TENCENTCLOUD_", "SENTRY_", "CVMKEEPER_", "_CVMKEEPER_"))
        and key != "CREDENTIALS_DIRECTORY"
    }
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["HOME"] = str(home)
    return env


def test_the_pages_are_the_readme_and_docs() -> None:
    names = set(PAGE_IDS)
    assert PAGE_IDS[0] == "README.md"
    expected = {
        "docs/install.md",
        "docs/policies.md",
        "docs/operations.md",
        "docs/alerting.md",
        "docs/emulator.md",
        "docs/reliability.md",
        "docs/performance.md",
        "docs/python-api.md",
        "docs/design.md",
        "docs/trust.md",
    }
    assert expected <= names, expected - names


def test_readme_is_short_and_starts_with_the_two_commands() -> None:
    size = len(README.read_bytes())
    assert size < README_LIMIT, f"README.md is {size} bytes, the limit is {README_LIMIT}"
    first = page_blocks(README)[0]
    assert first.text.splitlines()[0].startswith("make demo"), first.text
    assert first.text.splitlines()[1].startswith("make test"), first.text


def test_readme_and_the_index_link_every_docs_page() -> None:
    readme = README.read_text(encoding="utf-8")
    index = (DOCS / "README.md").read_text(encoding="utf-8")
    for path in PAGES[1:]:
        if path.name == "README.md":
            continue
        assert f"](docs/{path.name}" in readme, f"README.md does not link docs/{path.name}"
        assert f"]({path.name}" in index, f"docs/README.md does not link {path.name}"


@pytest.mark.parametrize("path", PAGES, ids=PAGE_IDS)
def test_markers_are_known_and_well_placed(path: Path) -> None:
    previous: Block | None = None
    for block in page_blocks(path):
        where = f"{page_name(path)}:{block.line}"
        assert block.marker is None or block.marker in KNOWN_MARKERS, where
        if block.marker == "runnable":
            assert block.language == "sh", where
        if block.marker in ("output", "demo-output"):
            assert block.language == "text", where
        if block.marker == "output":
            assert previous is not None and previous.marker == "runnable", where
        previous = block


def test_the_pages_have_runnable_blocks_and_shown_outputs() -> None:
    found = [block.marker for _, block in all_blocks()]
    assert found.count("runnable") >= 10
    assert found.count("output") >= 4
    assert found.count("demo-output") == 1


def anchors_of(path: Path) -> set[str]:
    """The anchors of every heading of a page."""
    return {slug(title) for _, title in headings(path.read_text(encoding="utf-8"))}


@pytest.mark.parametrize("path", PAGES, ids=PAGE_IDS)
def test_links_lead_to_files_and_headings(path: Path) -> None:
    """Every relative link of a page leads to a file that exists, and every ``#anchor`` to a
    heading of the page it names; a page with a ``## Contents`` lists every section."""
    text = path.read_text(encoding="utf-8")
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and (linked.suffix != ".md" or anchor not in anchors_of(linked)):
            broken.append(f"{target}: no such heading")
    assert not broken, f"{page_name(path)}: {broken}"
    titles = [title for level, title in headings(text) if level == 2 and title != "Contents"]
    if "Contents" in {title for _, title in headings(text)}:
        contents = text[text.index("\n## Contents\n") :]
        contents = contents[: contents.find("\n## ", 1)]
        for title in titles:
            assert f"[{title}](#{slug(title)})" in contents, f"{title!r} is not in the contents"


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
    examples = [block for _, block in all_blocks() if block.marker == "policy-example"]
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


def completion_scripts_were_written(directory: Path) -> None:
    home = directory / "home"
    assert "complete -o nosort -F _cvmkeeper_completion cvmkeeper" in (
        home / ".cvmkeeper-complete.bash"
    ).read_text(encoding="utf-8")
    assert "#compdef cvmkeeper" in (home / ".cvmkeeper-complete.zsh").read_text(encoding="utf-8")
    assert (directory / "my-cvmkeeper" / "policies" / "web-daily.yaml").is_file()


def generated_config_was_written(directory: Path) -> None:
    assert (directory / "my-cvmkeeper" / "policies" / "web-daily.yaml").is_file()


#: what a page's blocks leave behind, checked after they ran
AFTER_BLOCKS: dict[str, Callable[[Path], None]] = {
    "docs/operations.md": completion_scripts_were_written,
    "docs/policies.md": generated_config_was_written,
}
RUNNABLE_PAGES = [
    path for path in PAGES if any(block.marker == "runnable" for block in page_blocks(path))
]


def test_the_pages_with_checks_have_runnable_blocks() -> None:
    assert set(AFTER_BLOCKS) <= {page_name(path) for path in RUNNABLE_PAGES}


@pytest.mark.slow
@pytest.mark.wallclock
@pytest.mark.parametrize("path", RUNNABLE_PAGES, ids=[page_name(p) for p in RUNNABLE_PAGES])
def test_runnable_blocks_run_and_show_their_real_output(
    path: Path, sandbox: tuple[Path, str]
) -> None:
    directory, endpoint = sandbox
    name = page_name(path)
    found = page_blocks(path)
    runnable = [block for block in found if block.marker == "runnable"]
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
            f"{name}:{block.line}: exit {proc.returncode}, not {block.exit_code}\n{proc.stdout}"
        )
        outputs[block.line] = proc.stdout
    for previous, block in itertools.pairwise(found):
        if block.marker == "output":
            assert normalise(outputs[previous.line]) == normalise(block.text), (
                f"{name}:{block.line}: the shown output differs from the real one:\n"
                f"{outputs[previous.line]}"
            )
    if name in AFTER_BLOCKS:
        AFTER_BLOCKS[name](directory)
