"""docs/cam-policy.json grants exactly the actions the client calls (issue 19).

The set of called actions is read from the client's source (every string constant passed as
the action to ``call``, ``_paged`` or ``_instances_action``), so a new call without a
policy line, or a policy line for an action no longer called, fails here.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import cvmkeeper.cloud.client as client_module
from cvmkeeper.cloud.identity import ACTION as IDENTITY_ACTION
from cvmkeeper.cloud.tagging import TAG_ACTIONS

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "docs" / "cam-policy.json"
CALLERS = {"call": 1, "_paged": 1, "_instances_action": 1}  # method: index of the action


def called_actions() -> set[str]:
    tree = ast.parse(Path(client_module.__file__).read_text())
    actions: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            index = CALLERS.get(node.func.attr)
            if index is not None and len(node.args) > index:
                argument = node.args[index]
                if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                    actions.add(argument.value)
    return actions


def test_the_policy_is_cam_syntax_version_2() -> None:
    document = json.loads(POLICY.read_text())
    assert document["version"] == "2.0"
    assert document["statement"]
    for statement in document["statement"]:
        assert statement["effect"] == "allow"
        assert statement["resource"] == ["*"]  # Describe* have no resource-level permissions
        assert all(
            action.startswith(("name/cvm:", "name/sts:", "name/tag:"))
            for action in statement["action"]
        )
        assert not any("*" in action for action in statement["action"])


def test_the_policy_grants_exactly_the_actions_the_client_calls() -> None:
    document = json.loads(POLICY.read_text())
    actions = [action for statement in document["statement"] for action in statement["action"]]
    assert len(actions) == len(set(actions)), "an action is granted twice"
    cvm = {a.removeprefix("name/cvm:") for a in actions if a.startswith("name/cvm:")}
    sts = {a.removeprefix("name/sts:") for a in actions if a.startswith("name/sts:")}
    called = called_actions()
    assert {"CreateImage", "DescribeImages", "DeleteImages"} <= called  # the reading works
    assert cvm == called
    assert sts == {IDENTITY_ACTION}  # the one STS call: who the daemon is (docs/trust.md)
    tag = {a.removeprefix("name/tag:") for a in actions if a.startswith("name/tag:")}
    assert tag == TAG_ACTIONS  # the Tag API (cloud/tagging.py): marker tags on instances
    assert len(cvm) + len(sts) + len(tag) == len(actions)  # no other service
