"""Malformed input never produces a traceback: always a clean ConfigError (or a value)."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cvmkeeper.config import Config, ConfigError, Problem, parse_config_text, parse_policy_text
from cvmkeeper.core.policy import Policy

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = [p.read_text() for p in sorted((ROOT / "policies").glob("*.yaml"))]
CONFIG_SAMPLE = (ROOT / "config" / "cvmkeeper.yaml").read_text()
YAML_BITS = [
    ":",
    "- ",
    "{",
    "}",
    "[",
    "]",
    ",",
    "\n",
    "  ",
    "#",
    "&a ",
    "*a",
    "!!binary ",
    "<<: ",
    "'",
    '"',
    "|",
    ">",
    "? ",
    "---\n",
    "...\n",
    "%YAML 1.1\n",
    "!x ",
    "2001-02-30",
    "0x1f",
    "1_0",
    "1:30",
    ".inf",
    "null",
    "~",
    "yes",
    "keep_last",
    "name",
    "cron",
    "every",
    "\t",
    "\x00",
    "\ufeff",
    "é",
    # numbers past every bound: date arithmetic overflowed on these (issue 19)
    "99999999999w",
    "9999999999999999999999",
    "1.0e+300",
    "keep_within: ",
    "catch_up: ",
    "jitter: ",
    "every: ",
    # invisible and direction-changing characters (issue 19)
    "\u202e",
    "\u200b",
    "\x1b[31m",
]


def check(text: str) -> None:
    try:
        policy = parse_policy_text(text, "fuzz.yaml", default_regions=("ap-guangzhou",))
    except ConfigError as error:
        assert error.problems
        assert all(isinstance(p, Problem) and p.file == "fuzz.yaml" for p in error.problems)
    else:
        assert isinstance(policy, Policy)
    try:
        config = parse_config_text(text, Path("/nonexistent/cvmkeeper.yaml"))
    except ConfigError as error:
        assert error.problems
    else:
        assert isinstance(config, Config)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200))
@example("a: 2001-02-30\n")
@example("[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[" * 30)
@example("a: &x [*x]\n")
@example("name: !!python/object:os.system x\n")
def test_random_text(text: str) -> None:
    check(text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(YAML_BITS) | st.text(max_size=5), max_size=60).map("".join))
def test_random_yaml_shaped_text(text: str) -> None:
    check(text)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from([*SAMPLES, CONFIG_SAMPLE]),
    st.lists(
        st.tuples(st.integers(0, 10_000), st.integers(0, 8), st.sampled_from(YAML_BITS)),
        min_size=1,
        max_size=6,
    ),
)
def test_mutated_samples(sample: str, edits: list[tuple[int, int, str]]) -> None:
    text = sample
    for position, cut, insert in edits:
        at = position % (len(text) + 1)
        text = text[:at] + insert + text[at + cut :]
    check(text)
