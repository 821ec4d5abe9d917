"""``cvmkeeper simulate --html FILE``: the retention ladder of a replay, as one page.

Rendered the way ``cvmkeeper report`` renders an instance (``report_html``): a timeline of
the images kept at the end of the replay, each titled with the rules keeping it, then the
table, for the source region and each copy region. Self-contained: inline CSS and SVG,
no script, the same Content-Security-Policy.
"""

from __future__ import annotations

from html import escape

from cvmkeeper.cli.report_data import ImageRow, InstanceRow
from cvmkeeper.cli.report_html import CSP, STYLE, instance_card
from cvmkeeper.core.simulation import KeptImage, SimulationResult


def _row(label: str, kept: tuple[KeptImage, ...]) -> InstanceRow:
    row = InstanceRow(label, "simulated instance", None, [])
    row.images = [
        ImageRow("-", k.name, k.slot, "NORMAL", ", ".join(k.reasons), False, False) for k in kept
    ]
    return row


def render_simulation_html(
    result: SimulationResult, days: int, bound: str, copy_bounds: list[str]
) -> str:
    """The page for ``result`` (``bound``: the most images retention can hold, explained)."""
    sections = [
        f'<h2 id="source">Kept at the end ({len(result.kept)})</h2>'
        f"<p>{result.slots} slots, {result.created} images created, {result.deleted} deleted; "
        f"most held at once: {result.peak} right after a create, {result.peak_after_rotation} "
        f"after rotation (bound: {escape(bound)})</p>"
        + instance_card(_row("the policy's regions", result.kept), result.end)
    ]
    for copy, copy_bound in zip(result.copies, copy_bounds, strict=True):
        sections.append(
            f'<h2 id="copies-{escape(copy.region)}">Copies kept in {escape(copy.region)} '
            f"({len(copy.kept)})</h2><p>{copy.created} copied, {copy.deleted} deleted; most "
            f"held at once: {copy.peak} right after a copy, {copy.peak_after_rotation} after "
            f"rotation (bound: {escape(copy_bound)})</p>"
            + instance_card(_row(copy.region, copy.kept), result.end)
        )
    start, end = (m.strftime("%Y-%m-%d %H:%MZ") for m in (result.start, result.end))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<title>cvmkeeper simulate {escape(result.policy)}</title>
<style>{STYLE}</style></head><body>
<h1>simulate {escape(result.policy)}: {days} days</h1>
<p class="meta">{escape(start)} to {escape(end)}; one image per slot, every create succeeds,
retention after each. Each dot is an image kept at the end, titled with the rules keeping it.</p>
{"".join(sections)}
</body></html>
"""
