"""Charts drawn on the server: no JavaScript chart library, nothing to fetch, readable on a phone.

Time axes are inline SVG with a viewBox, so they scale to their container; rows of bars and intervals are plain
HTML, so they reflow to any width with text at its normal size. Text is escaped here; colours come from CSS
classes (static/console.css), so the charts follow the page's theme.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from html import escape

from markupsafe import Markup

from gmtrouter.serve.beliefs import Belief
from gmtrouter.serve.ui.insights import DAY, HOUR, Activity


def _svg(width: int, height: int, body: list[str], label: str, kind: str = "wide") -> Markup:
    """A chart element. `wide` keeps a minimum width on a phone (its card scrolls sideways instead); `only-wide`
    and `only-narrow` are two drawings of one chart, each shown at the widths it is drawn for."""
    return Markup(
        f'<svg class="chart {kind}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(label)}" preserveAspectRatio="xMinYMin meet">{"".join(body)}</svg>'
    )


def _nice_max(value: float) -> float:
    """The axis top: 1, 2 or 5 times a power of ten, at least `value`."""
    if value <= 0:
        return 1.0
    power = 10 ** len(str(int(value))) / 10
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power


UNITS = {1.0: "second", 10.0: "10 seconds", 60.0: "minute", 300.0: "5 minutes", 900.0: "15 minutes", HOUR: "hour"}
UNITS[6 * HOUR] = "6 hours"


def activity_chart(data: Activity) -> Markup:
    """Routes and feedback per time bin, side by side: drawn twice, for a desktop and for a phone, so that a phone
    shows the whole chart, its y axis included, with text of a readable size rather than a part that scrolls."""
    return Markup(_activity_svg(data, 860, 8, "only-wide") + _activity_svg(data, 420, 4, "only-narrow"))


def _activity_svg(data: Activity, width: int, labels: int, kind: str) -> Markup:
    height, left, bottom = 230, 44, 28
    plot_w, plot_h = width - left - 8, height - bottom - 10
    top = _nice_max(max([*data.routes, *data.feedback, 0]))
    n = max(1, len(data.starts))
    slot = plot_w / n
    body = [f'<line class="axis" x1="{left}" y1="{10 + plot_h}" x2="{width - 8}" y2="{10 + plot_h}"/>']
    for frac in (0.5, 1.0):
        y = 10 + plot_h * (1 - frac)
        body.append(f'<line class="grid" x1="{left}" y1="{y:.1f}" x2="{width - 8}" y2="{y:.1f}"/>')
        body.append(f'<text class="tick" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{top * frac:g}</text>')
    bar = max(1.0, slot / 2 - 1)
    every = max(1, math.ceil(n / labels))
    stamp_format = "%H:%M:%S" if data.bucket < 60 else "%H:%M" if data.bucket < DAY else "%m-%d"
    for i, start in enumerate(data.starts):
        x = left + i * slot
        for j, (name, values) in enumerate((("routes", data.routes), ("feedback", data.feedback))):
            value = values[i] if i < len(values) else 0
            h = plot_h * value / top
            body.append(
                f'<rect class="bar {name}" x="{x + j * bar:.1f}" y="{10 + plot_h - h:.1f}" width="{bar:.1f}" '
                f'height="{h:.1f}"><title>{value} {name}</title></rect>'
            )
        if i % every == 0:
            stamp = time.strftime(stamp_format, time.gmtime(start))
            body.append(
                f'<text class="tick" x="{x + slot / 2:.1f}" y="{height - 10}" text-anchor="middle">{stamp}</text>'
            )
    unit = UNITS.get(data.bucket, "day")
    return _svg(width, height, body, f"routes and feedback per {unit} (UTC)", kind)


def bar_chart(items: Sequence[tuple[str, float]], unit: str = "", digits: int = 0) -> Markup:
    """Horizontal bars, one labelled row each (shares of traffic, spend by policy); HTML, so it reflows."""
    top = max([v for _, v in items] + [0.0]) or 1.0
    rows = []
    for label, value in items:
        shown = f"{value:,.{digits}f}{unit}"
        rows.append(
            f'<div class="hbar"><span class="label">{escape(label)}</span><span class="track">'
            f'<span class="fill" style="width:{100 * value / top:.1f}%"></span></span>'
            f'<span class="val">{shown}</span></div>'
        )
    return Markup(f'<div class="hbars" role="img" aria-label="bar chart">{"".join(rows)}</div>')


def _logistic(logit: float) -> float:
    return 1 / (1 + math.exp(-max(-50.0, min(50.0, logit))))


def belief_chart(items: Sequence[Belief]) -> Markup:
    """What the router believes of a user: per LLM, the chance that the user prefers its answer to one of the
    population's average LLM (the logistic of the score), for this user (dot, 95% interval) and for a new user
    (tick), on a 0..100% track; beside it, how many of the user's comparisons and thumbs involve the LLM.

    HTML rather than SVG: the rows reflow to any width, and the text keeps its size on a phone.
    """
    rows = []
    for b in items:
        point, low, high = (_logistic(x) for x in (b.user.score, b.user.low, b.user.high))
        new = _logistic(b.new_user.score)
        marks = (
            f'<span class="pop" style="left:{100 * new:.1f}%" title="a new user: {new:.0%}"></span>'
            f'<span class="interval" style="left:{100 * low:.1f}%;width:{100 * (high - low):.1f}%"></span>'
            f'<span class="dot" style="left:{100 * point:.1f}%"></span>'
        )
        title = (
            f"score {b.user.score:+.2f} (95% interval {b.user.low:+.2f} to {b.user.high:+.2f}), a new user's "
            f"{b.new_user.score:+.2f}; {b.comparisons} comparisons and {b.thumbs} thumbs of this user"
        )
        rows.append(
            f'<div class="taste" title="{escape(title)}"><span class="llm">{escape(b.llm)}</span>'
            f'<span class="track">{marks}</span><span class="val">{point:.0%} ({b.comparisons + b.thumbs})</span></div>'
        )
    ticks = "<i>0%</i><i>50%</i><i>100%</i>"
    axis = f'<div class="taste axis"><span></span><span class="track">{ticks}</span><span></span></div>'
    label = "the router's view of each LLM for this user"
    return Markup(f'<div class="tastes" role="img" aria-label="{label}">{"".join(rows)}{axis}</div>')


def step_chart(points: Sequence[tuple[float, int]], base: int, now: float) -> Markup:
    """History size over time: a step line from the records that came with the model, up to now."""
    width, height, left, bottom = 860, 190, 44, 26
    plot_w, plot_h = width - left - 8, height - bottom - 10
    if not points:
        return _svg(width, 40, [f'<text class="label" x="8" y="24">{base} records, none stored since</text>'], "")
    t0, t1 = points[0][0], max(now, points[-1][0], points[0][0] + 1)
    top = _nice_max(points[-1][1])

    def xy(t: float, size: int) -> tuple[float, float]:
        return left + plot_w * (t - t0) / (t1 - t0), 10 + plot_h * (1 - size / top)

    x, y = xy(t0, base)
    path = [f"M{x:.1f} {y:.1f}"]
    for t, size in points:
        x, y = xy(t, size)
        path.append(f"H{x:.1f} V{y:.1f}")
    path.append(f"H{width - 8}")
    body = [
        f'<line class="axis" x1="{left}" y1="{10 + plot_h}" x2="{width - 8}" y2="{10 + plot_h}"/>',
        f'<text class="tick" x="{left - 6}" y="14" text-anchor="end">{top:g}</text>',
        f'<text class="tick" x="{left - 6}" y="{10 + plot_h}" text-anchor="end">0</text>',
        f'<path class="line" d="{" ".join(path)}"/>',
    ]
    for t, anchor, x in ((t0, "start", left), (t1, "end", width - 8)):
        stamp = time.strftime("%Y-%m-%d %H:%M", time.gmtime(t))
        body.append(f'<text class="tick" x="{x}" y="{height - 6}" text-anchor="{anchor}">{stamp}</text>')
    return _svg(width, height, body, "history size over time")
