"""docs/design.md is the design the code cites: every citation names a section it has.

Code and docs cite it as ``docs/design.md "Section"`` or by rule number; a citation of a
section that does not exist (or of a rule it does not list) fails here, and nothing may
cite the old, out-of-repository ``DESIGN.md``.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DESIGN = ROOT / "docs" / "design.md"
CITED = re.compile(r'docs/design\.md,? \(?"([^"]+)"(?:, "([^"]+)")?')
RULE = re.compile(r"docs/design\.md,? rules? (\d+)")


def cited_files() -> list[Path]:
    """Every source, test and documentation file that may cite the design."""
    files = [*sorted((ROOT / "src").rglob("*.py")), *sorted((ROOT / "tests").rglob("*.py"))]
    this = Path(__file__).resolve()
    pages = [p for p in sorted((ROOT / "docs").glob("*.md")) if p != DESIGN]
    return [*(f for f in files if f != this), ROOT / "README.md", ROOT / "CONTRIBUTING.md", *pages]


def headings() -> set[str]:
    """The section titles of docs/design.md."""
    return {
        line.lstrip("#").strip()
        for line in DESIGN.read_text(encoding="utf-8").splitlines()
        if line.startswith("## ")
    }


def test_every_cited_section_exists() -> None:
    sections = headings()
    missing, found = [], 0
    for path in cited_files():
        text = " ".join(path.read_text(encoding="utf-8").split())  # citations may wrap
        for match in CITED.finditer(text):
            found += 1
            missing += [
                f"{path.name}: {name!r}" for name in match.groups() if name and name not in sections
            ]
    assert found >= 5, "too few section citations found: the pattern is out of date"
    assert not missing, f"sections not in docs/design.md: {missing}"


def test_every_cited_rule_is_listed() -> None:
    text = DESIGN.read_text(encoding="utf-8")
    rules = {int(n) for n in re.findall(r"^(\d+)\. \*\*", text, flags=re.MULTILINE)}
    assert rules == set(range(1, 11))
    cited = {
        (path.name, int(n))
        for path in cited_files()
        for n in RULE.findall(" ".join(path.read_text(encoding="utf-8").split()))
    }
    assert cited, "no rule citations found: the pattern is out of date"
    assert not [c for c in cited if c[1] not in rules]


def test_nothing_cites_the_old_design_card() -> None:
    offenders = [
        path.name
        for path in cited_files()
        if re.search(r"(?<![/\w])DESIGN\.md", path.read_text(encoding="utf-8"))
    ]
    assert offenders == []


def test_it_says_where_each_concept_lives() -> None:
    text = DESIGN.read_text(encoding="utf-8")
    assert "## Where each concept lives" in text
    for package in ("core", "config", "cloud", "executor", "alerting", "scheduler", "emulator"):
        assert f"  {package}/" in text, package
        assert (ROOT / "src" / "cvmkeeper" / package).is_dir(), package
