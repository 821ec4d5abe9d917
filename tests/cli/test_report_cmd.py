"""``cvmkeeper report --html FILE``: one self-contained page, checked as text and in a real
headless Chromium (the distribution's package): it renders the expected elements, the
quota bars really paint, and the browser logs no console message (errors and refused
loads are console messages, as the control page shows)."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import sys
import zlib
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests/ helpers

from cvmkeeper.cli import cli
from executor.world import REGION, T0, A, B, World, fleet, managed, policy, unmanaged, world

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (.ci/run installs it in CI)"
)
EVIL_NAME = '<script>alert("x")</script>&web'


def spec() -> dict[str, object]:
    images = (
        [unmanaged("img-hand0001", "golden-1")]
        + [managed(A, T0 + timedelta(hours=h), f"img-aaaa000{h}") for h in range(3)]
        + [managed(B, T0, "img-bbbb0000")]
    )
    return fleet(instances=[{"id": A, "name": EVIL_NAME}, {"id": B, "name": "db-1"}], images=images)


def write_report(w: World, out: Path, hours: float = 5) -> tuple[int, str]:
    document = yaml.safe_load(w.config_path.read_text())
    document["state_dir"] = "state"
    w.config_path.write_text(yaml.safe_dump(document))
    when = (T0 + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%MZ")
    result = CliRunner().invoke(
        cli, ["report", "--config", str(w.config_path), "--at", when, "--html", str(out)]
    )
    return result.exit_code, result.output


def test_the_page_is_self_contained_escaped_and_complete(tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    with world(tmp_path, spec(), policy(ids=[A, B], keep_last=2)) as w:
        code, output = write_report(w, out)
    assert code == 0, output
    assert output.startswith(f"wrote {out}: 1 regions, 2 instances, 1 policies")
    page = out.read_text(encoding="utf-8")
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<script" not in page and "@import" not in page and "url(" not in page
    assert EVIL_NAME not in page and "&lt;script&gt;alert(&quot;x&quot;)" in page
    assert page.count('class="bar quota-bar"') == 1
    assert "cvmkeeper 4" in page and "others 1" in page and "free 5" in page
    assert "quota 10 (account 10, cap image_quota 10)" in page
    # A: images at T0+0..2h, keep_last 2 keeps two, the oldest expires
    assert page.count('class="image-dot"') == 4
    assert "expires at next run" in page and "keep_last #1" in page
    # slots after each instance's newest image, up to --at T0+5h, have no image
    assert "2 slots missed since the newest image: 2026-11-27 04:00Z, 2026-11-27 03:00Z" in page
    assert "4 slots missed since the newest image" in page  # B: newest at T0
    assert page.count('class="policy-row"') == 1 and "never run" in page
    assert "<th>holds</th>" in page and "<td>system " in page  # the disks each image holds


def test_an_unreadable_region_is_shown_and_exits_1(tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    with world(tmp_path, spec(), policy(ids=[A]) | {"regions": [REGION, "ap-nowhere"]}) as w:
        code, output = write_report(w, out)
    assert code == 1
    assert "report: cannot read ap-nowhere" in output
    page = out.read_text(encoding="utf-8")
    assert "CLOUD NOT READ in ap-nowhere" in page
    assert 'class="error region-error"' in page


def test_an_unwritable_file_is_exit_2(tmp_path: Path) -> None:
    with world(tmp_path, spec(), policy(ids=[A])) as w:
        code, output = write_report(w, tmp_path / "missing-dir" / "r.html")
    assert code == 2
    assert "cannot write" in output and "Traceback" not in output


def chromium(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1200,1600",
            *args,
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=browser_env(),
    )


def browser_env() -> dict[str, str]:
    """The environment without ``make test-clock``'s clock shim: the browser only renders a
    page cvmkeeper already wrote (under the shifted clock), and Chromium under a preloaded
    libfaketime hangs (seen with a clock shifted by months)."""
    shim = ("LD_PRELOAD", "FAKETIME", "FAKETIME_NO_CACHE", "DONT_FAKE_MONOTONIC")
    return {key: value for key, value in os.environ.items() if key not in shim}


def console_messages(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


def png_pixels(path: Path) -> tuple[int, int, list[bytes]]:
    """Width, height and the RGB(A) rows of a non-interlaced 8-bit PNG (Chromium's)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        chunk = data[pos + 8 : pos + 8 + length]
        header = chunk if kind == b"IHDR" else header
        idat += chunk if kind == b"IDAT" else b""
        pos += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and colour in (2, 6)
    size = 3 if colour == 2 else 4
    raw, stride, rows = zlib.decompress(idat), width * size, []
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - size] if i >= size else 0
            up, corner = previous[i], previous[i - size] if i >= size else 0
            if kind == 1:
                line[i] = (line[i] + left) & 255
            elif kind == 2:
                line[i] = (line[i] + up) & 255
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 255
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[i] = (
                    line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)
                ) & 255
        rows.append(bytes(line))
        previous = line
    return (
        width,
        height,
        [
            bytes(r) if size == 3 else bytes(b for j in range(0, len(r), 4) for b in r[j : j + 3])
            for r in rows
        ],
    )


def count_colour(rows: list[bytes], rgb: tuple[int, int, int], tolerance: int = 6) -> int:
    found = 0
    for row in rows:
        for j in range(0, len(row), 3):
            if all(abs(row[j + k] - rgb[k]) <= tolerance for k in range(3)):
                found += 1
    return found


@needs_chromium
@pytest.mark.slow
def test_the_page_renders_in_headless_chromium_without_console_messages(
    tmp_path: Path,
) -> None:
    out = tmp_path / "report.html"
    with world(tmp_path, spec(), policy(ids=[A, B], keep_last=2)) as w:
        code, output = write_report(w, out)
    assert code == 0, output

    shot = tmp_path / "shot.png"
    taken = chromium(out, tmp_path / "profile-1", f"--screenshot={shot}")
    assert taken.returncode == 0, taken.stderr[-2000:]
    assert console_messages(taken.stderr) == []
    width, height, rows = png_pixels(shot)
    assert (width, height) == (1200, 1600)
    assert count_colour(rows, (0x2F, 0x81, 0xF7)) > 2000  # cvmkeeper's share of the bar
    assert count_colour(rows, (0xDA, 0xFB, 0xE1)) > 2000  # the free share

    dom = chromium(out, tmp_path / "profile-2", "--dump-dom")
    assert dom.returncode == 0
    assert console_messages(dom.stderr) == []
    rendered = dom.stdout
    assert rendered.count('class="bar quota-bar"') == 1
    assert rendered.count('class="card instance"') == 2
    assert rendered.count('class="image-row"') == 4
    assert rendered.count('class="missed-slot"') == 6
    assert "<script>alert" not in rendered


@needs_chromium
@pytest.mark.slow
def test_the_console_check_catches_errors_and_refused_loads(tmp_path: Path) -> None:
    """Guards the check above: a page with a script error and an external image does log."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        '<!DOCTYPE html><html><head><meta http-equiv="Content-Security-Policy" '
        "content=\"default-src 'none'\"></head><body><img src='http://127.0.0.1:9/x'>"
        "<script>nope()</script></body></html>"
    )
    result = chromium(bad, tmp_path / "profile", "--dump-dom")
    messages = console_messages(result.stderr)
    assert len(messages) >= 2, result.stderr[-2000:]
    assert any("127.0.0.1:9/x" in line for line in messages)


SAMPLE_CONFIG = Path(__file__).resolve().parents[2] / "config" / "cvmkeeper.yaml"


def test_simulate_writes_the_retention_ladder_as_a_page(tmp_path: Path) -> None:
    import json

    out = tmp_path / "ladder.html"
    args = [
        "simulate",
        "--config",
        str(SAMPLE_CONFIG),
        "--policy",
        "web-daily",
        "--days",
        "400",
        "--at",
        "2026-01-01",
    ]
    result = CliRunner().invoke(cli, [*args, "--json", "--html", str(out)])
    assert result.exit_code == 0, result.output
    kept = json.loads(result.stdout)["kept"]
    page = out.read_text(encoding="utf-8")
    assert "default-src 'none'" in page and "<script" not in page
    assert f"Kept at the end ({len(kept)})" in page
    assert page.count('class="image-dot"') == page.count('class="image-row"') == len(kept)
    for image in kept:
        assert image["name"] in page and ", ".join(image["reasons"]) in page
    bad = CliRunner().invoke(cli, [*args, "--html", str(tmp_path / "no" / "x.html")])
    assert bad.exit_code == 2 and "cannot write" in bad.output


@needs_chromium
@pytest.mark.slow
def test_the_ladder_renders_in_headless_chromium(tmp_path: Path) -> None:
    out = tmp_path / "ladder.html"
    result = CliRunner().invoke(
        cli,
        [
            "simulate",
            "--config",
            str(SAMPLE_CONFIG),
            "--policy",
            "web-daily",
            "--days",
            "120",
            "--at",
            "2026-01-01",
            "--html",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    dom = chromium(out, tmp_path / "profile", "--dump-dom")
    assert dom.returncode == 0
    assert console_messages(dom.stderr) == []
    assert dom.stdout.count('class="image-dot"') >= 3


def test_a_disk_left_out_of_a_backup_is_on_the_page(tmp_path: Path) -> None:
    scratch = {"id": "disk-scratch1", "type": "LOCAL_SSD", "size": 100}
    out = tmp_path / "report.html"
    with world(
        tmp_path, fleet(instances=({"id": A, "data_disks": [scratch]},)), policy(ids=[A])
    ) as w:
        code, output = write_report(w, out, hours=0.5)
    assert code == 0, output
    page = out.read_text(encoding="utf-8")
    assert page.count('class="warn disk-warning"') == 1
    assert "disk-scratch1" in page


def test_instances_needing_attention_are_listed_first_and_linked(tmp_path: Path) -> None:
    """At fleet scale the instance cards are hundreds of screens: the instances with
    missed slots or no NORMAL image at all are listed at the top, each linked to its card;
    one that is fine is not."""
    c = "ins-cccccccc"
    fine = [managed(A, T0 + timedelta(hours=h), f"img-aaaa000{h}") for h in range(6)]
    instances = [{"id": A}, {"id": B, "name": "db-1"}, {"id": c, "name": "lost"}]
    images = [*fine, managed(B, T0, "img-bbbb0000")]
    out = tmp_path / "report.html"
    with world(tmp_path, fleet(instances=instances, images=images), policy(ids=[A, B, c])) as w:
        code, output = write_report(w, out, hours=5.5)
    assert code == 0, output
    page = out.read_text(encoding="utf-8")
    top = page.index('id="attention"')
    assert top < page.index('id="regions"')
    assert "Needs attention (2 instances)" in page
    items = re.findall(r'<li class="attention-item"><a href="#([^"]+)">([^<]+)</a>([^<]*)', page)
    assert [(item[1], item[2]) for item in items] == [
        (B, f" (db-1) in {REGION}: 5 slots missed since the newest image"),
        (c, f" (lost) in {REGION}: no NORMAL image"),
    ]
    for anchor, _, _ in items:
        assert f'<div class="card instance" id="{anchor}"' in page
