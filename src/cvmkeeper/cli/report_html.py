"""``Report`` → one self-contained HTML page: inline CSS and SVG, no script, no external
asset (a Content-Security-Policy of ``default-src 'none'`` makes the browser refuse any).

Per region a quota bar (cvmkeeper's images, others', free); per instance a timeline of its
images (each dot titled with the rule keeping it; crosses for slots missed since the newest
image) and the table of its images; per policy the next slots and the last result. Every
text is HTML-escaped: names and messages come from the cloud and from config files.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from html import escape

from cvmkeeper.cli.report_data import InstanceRow, PolicyRow, RegionRow, Report

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
WIDTH, HEIGHT, PAD = 720, 44, 14

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#1d2733;
background:#f6f8fa}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid
#d0d7de;padding-bottom:4px}h3{font-size:15px;margin:18px 0 4px}
.meta{color:#57606a}.card{background:#fff;border:1px solid #d0d7de;border-radius:6px;
padding:12px 16px;margin:10px 0}
.bar{display:flex;height:22px;border-radius:4px;overflow:hidden;border:1px solid #d0d7de;
max-width:720px}
.bar span{display:block;height:100%}.managed{background:#2f81f7}.unmanaged{background:#8c959f}
.free{background:#dafbe1}.legend span{display:inline-block;width:10px;height:10px;
margin:0 4px 0 12px;border-radius:2px}
.error{color:#cf222e;font-weight:600}.ok{color:#1a7f37;font-weight:600}
.warn{color:#9a6700;font-weight:600}
table{border-collapse:collapse;margin:6px 0;font-size:13px}
td,th{border-bottom:1px solid #eaeef2;padding:3px 10px 3px 0;text-align:left;
vertical-align:top}th{color:#57606a;font-weight:600}
code{font:12px ui-monospace,SFMono-Regular,Menlo,monospace}
svg text{font:11px system-ui,sans-serif;fill:#57606a}
"""


def _t(moment: datetime | None) -> str:
    return "-" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%MZ")


def quota_bar(row: RegionRow) -> str:
    """The quota bar of one region, or its error."""
    head = f'<h3 id="region-{escape(row.region)}">{escape(row.region)}</h3>'
    if row.error is not None or not row.quota:
        return (
            f'{head}<p class="error region-error">cannot be read: '
            f"{escape(row.error or 'no quota')}</p>"
        )
    total = max(row.quota, row.managed + row.unmanaged)

    def part(kind: str, count: int) -> str:
        width = 100.0 * count / total if total else 0
        return f'<span class="{kind}" style="width:{width:.2f}%" title="{kind}: {count}"></span>'

    cap = "no cap" if row.cap is None else f"cap image_quota {row.cap}"
    account = "?" if row.account_quota is None else str(row.account_quota)
    return (
        f'{head}<div class="bar quota-bar" data-region="{escape(row.region)}">'
        f"{part('managed', row.managed)}{part('unmanaged', row.unmanaged)}"
        f"{part('free', row.free)}</div>"
        f'<div class="legend"><span class="managed"></span>cvmkeeper {row.managed}'
        f'<span class="unmanaged"></span>others {row.unmanaged}'
        f'<span class="free"></span>free {row.free}'
        f" &nbsp; quota {row.quota} (account {account}, {cap})</div>"
        + "".join(f'<p class="warn disk-warning">{escape(w)}</p>' for w in row.disk_warnings)
    )


def timeline(row: InstanceRow, now: datetime) -> str:
    """An SVG time axis: a dot per image (colour by state and fate), a cross per missed
    slot; each mark has a ``<title>`` with the name and the rule keeping it."""
    moments = [i.slot for i in row.images] + row.missed
    start = min(moments, default=now - timedelta(days=1))
    span = max((now - start).total_seconds(), 3600.0) * 1.04

    def x(moment: datetime) -> float:
        return PAD + (WIDTH - 2 * PAD) * (1 - (now - moment).total_seconds() / span)

    marks = [
        f'<line x1="{PAD}" y1="22" x2="{WIDTH - PAD}" y2="22" stroke="#d0d7de"/>',
        f'<text x="{PAD}" y="40">{escape(_t(now - timedelta(seconds=span)))}</text>',
        f'<text x="{WIDTH - PAD}" y="40" text-anchor="end">now {escape(_t(now))}</text>',
    ]
    for image in row.images:
        colour = (
            "#cf222e"
            if image.state not in {"NORMAL", "CREATING"}
            else "#bf8700"
            if image.expires
            else "#2f81f7"
        )
        title = f"{image.name} {_t(image.slot)} {image.state}: {image.kept_by}"
        marks.append(
            f'<circle class="image-dot" cx="{x(image.slot):.1f}" cy="22" r="5" '
            f'fill="{colour}"><title>{escape(title)}</title></circle>'
        )
    for slot in row.missed:
        cx = x(slot)
        marks.append(
            f'<g class="missed-slot"><path d="M{cx - 4:.1f} 18 l8 8 m0 -8 l-8 8" '
            f'stroke="#cf222e" stroke-width="2"/><title>missed slot {escape(_t(slot))}'
            f"</title></g>"
        )
    return (
        f'<svg class="timeline" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="images of {escape(row.instance_id)}">{"".join(marks)}</svg>'
    )


def instance_card(row: InstanceRow, now: datetime) -> str:
    """One instance: name, policies, timeline, and the table of its images."""
    name = f" ({escape(row.name)})" if row.name and row.name != row.instance_id else ""
    notes = []
    if row.copies_from:
        notes.append(f"copies; the instance is in {escape(row.copies_from)}")
    if row.orphan:
        notes.append("orphan: no policy targets it")
    if row.policies:
        notes.append("policies: " + ", ".join(escape(p) for p in row.policies))
    missed = ""
    if row.missed:
        more = f" and {row.missed_more} more" if row.missed_more else ""
        missed = (
            f'<p class="error">{len(row.missed)}{more} slots missed since the newest '
            f"image: {escape(', '.join(_t(s) for s in row.missed[:5]))}"
            f"{' ...' if len(row.missed) > 5 else ''}</p>"
        )
    rows = (
        "".join(
            f'<tr class="image-row"><td><code>{escape(i.name)}</code></td>'
            f"<td><code>{escape(i.image_id)}</code></td><td>{escape(_t(i.slot))}</td>"
            f"<td>{escape(i.state)}</td><td>{escape(i.holds)}</td>"
            f'<td class="{"warn" if i.expires else ""}">{escape(i.kept_by)}</td></tr>'
            for i in row.images
        )
        or '<tr><td colspan="6">no managed image</td></tr>'
    )
    return (
        f'<div class="card instance" id="{_anchor(row)}" data-instance="{escape(row.instance_id)}">'
        f"<strong>{escape(row.instance_id)}</strong>{name} in {escape(row.region)}"
        f'<div class="meta">{"; ".join(notes)}</div>{timeline(row, now)}{missed}'
        "<table><tr><th>image</th><th>id</th><th>slot</th><th>state</th>"
        f"<th>holds</th><th>kept by</th></tr>{rows}</table></div>"
    )


def _anchor(row: InstanceRow) -> str:
    """The id of an instance's card (an instance may appear in several regions)."""
    return escape(f"i-{row.region}-{row.instance_id}")


def attention(instances: list[InstanceRow]) -> str:
    """The instances to look at first, linked to their cards: those with a slot missed
    since their newest image, and targeted ones with no NORMAL image at all. At 300
    instances the cards are a long page; a failure must not hide on its 200th screen."""
    rows = []
    for row in instances:
        normal = any(i.state == "NORMAL" for i in row.images)
        if not row.missed and (normal or not row.policies):
            continue
        if not normal:
            why = "no NORMAL image"
        else:
            more = row.missed_more + len(row.missed)
            why = f"{more} slot{'s' if more != 1 else ''} missed since the newest image"
        name = f" ({escape(row.name)})" if row.name and row.name != row.instance_id else ""
        rows.append(
            f'<li class="attention-item"><a href="#{_anchor(row)}">{escape(row.instance_id)}'
            f"</a>{name} in {escape(row.region)}: {escape(why)}</li>"
        )
    if not rows:
        return '<p class="ok" id="attention">Every targeted instance has its backups.</p>'
    return (
        f'<h2 id="attention" class="error">Needs attention ({len(rows)} instance'
        f"{'s' if len(rows) != 1 else ''})</h2><ul>{''.join(rows)}</ul>"
    )


def policy_row(row: PolicyRow) -> str:
    """One row of the policy table."""
    if row.last_result is None:
        last = '<span class="meta">never run</span>'
    else:
        css = "ok" if row.last_result == "ok" else "error"
        last = (
            f'<span class="{css}">{escape(row.last_result.upper())}</span> '
            f"{escape(_t(row.last_finished))}"
        )
        if row.last_errors:
            last += "<br>" + "<br>".join(escape(e) for e in row.last_errors[:5])
    return (
        f'<tr class="policy-row"><td><strong>{escape(row.name)}</strong></td>'
        f"<td>{escape(row.schedules)}</td><td>{escape(', '.join(row.regions))}</td>"
        f"<td>{'<br>'.join(escape(_t(s)) for s in row.next_slots) or 'none'}</td>"
        f"<td>{last}</td></tr>"
    )


def render_html(report: Report) -> str:
    """The whole page."""
    unreadable = [r.region for r in report.regions if r.error is not None]
    banner = ""
    if unreadable:
        banner = (
            f'<p class="error banner">CLOUD NOT READ in {escape(", ".join(unreadable))}:'
            " what is shown covers only the regions read.</p>"
        )
    if report.state_problem:
        banner += f'<p class="error">state file: {escape(report.state_problem)}</p>'
    for file, problems in report.broken.items():  # issue #19: named, never hidden
        listed = "".join(f"<li>{escape(problem)}</li>" for problem in problems)
        banner += (
            f'<div class="error banner">POLICY FILE CANNOT BE USED: {escape(file)}: its '
            "policy is not shown and does not run; images it may keep are held, never "
            f"rotated, until it is fixed (cvmkeeper validate).<ul>{listed}</ul></div>"
        )
    regions = "".join(quota_bar(r) for r in report.regions)
    instances = (
        "".join(instance_card(i, report.now) for i in report.instances)
        or "<p>no instance is targeted and no managed image exists</p>"
    )
    policies = "".join(policy_row(p) for p in report.policies)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>cvmkeeper report {escape(_t(report.now))}</title>
<style>{STYLE}</style></head><body>
<h1>cvmkeeper report</h1>
<p class="meta">{escape(_t(report.now))} &middot; {escape(str(report.config_file))}</p>
{banner}
{attention(report.instances)}
<h2 id="regions">Regions: custom-image quota</h2>
{regions}
<h2 id="policies">Policies</h2>
<table><tr><th>policy</th><th>schedules</th><th>regions</th><th>next slots (UTC)</th>
<th>last result</th></tr>{policies}</table>
<h2 id="instances">Instances: images and the rule keeping each</h2>
<p class="meta">Blue: kept; amber: expires at the next run; red: failed image. A red cross is
a slot since the newest image that has no image (missed or failed).</p>
{instances}
</body></html>
"""
