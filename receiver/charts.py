"""Small charts drawn on the server as inline SVG: no script, no network, nothing the CSP must allow.

Each bar or point carries a <title>, which browsers show on hover, so the numbers are there without
JavaScript; the legend beside each chart gives the window's totals.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH, HEIGHT = 330, 96
LEFT, BOTTOM, TOP = 34, 14, 4  # room for the y-axis labels, the x-axis labels, the top
COLORS = ("#3366cc", "#dc7912", "#109618", "#990099", "#0099c6", "#dd4477", "#66aa00", "#b82e2e")


@dataclass(frozen=True)
class Series:
    """One named row of values, one per label; None is a gap (nothing sampled)."""

    name: str
    values: Sequence[float | None]
    color: str = ""


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 or value == int(value) else f"{value:.2f}"


def _ceiling(value: float) -> float:
    """A round top for the y axis: 1, 2 or 5 times a power of ten."""
    if value <= 0:
        return 1.0
    step = 1.0
    while step * 10 <= value:
        step *= 10
    return next(m * step for m in (1, 2, 5, 10) if m * step >= value)


def draw(chart_id: str, labels: Sequence[str], series: Sequence[Series], kind: str = "bars", unit: str = "") -> Markup:
    """An SVG chart: stacked bars (counts) or lines (latency, depth) of `series` over `labels`."""
    series = [s if s.color else Series(s.name, s.values, COLORS[i % len(COLORS)]) for i, s in enumerate(series)]
    n = max(1, len(labels))
    plot_w, plot_h = WIDTH - LEFT, HEIGHT - BOTTOM - TOP
    if kind == "bars":
        top = _ceiling(max((sum(s.values[i] or 0 for s in series) for i in range(len(labels))), default=0))
    else:
        top = _ceiling(max((v for s in series for v in s.values if v is not None), default=0))
    slot = plot_w / n
    parts = [
        f'<svg id="{escape(chart_id)}" class="chart-{kind}" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}"'
        f' viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(chart_id)}">',
        f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH}" y2="{TOP + plot_h}" stroke="#999"/>',
        f'<text x="{LEFT - 3}" y="{TOP + 8}" font-size="9" text-anchor="end">{escape(_fmt(top))}</text>',
        f'<text x="{LEFT - 3}" y="{TOP + plot_h}" font-size="9" text-anchor="end">0</text>',
    ]
    for i in sorted({0, n // 2, n - 1}):
        if i < len(labels):
            anchor = "start" if i == 0 else "end" if i == n - 1 else "middle"
            x = LEFT + slot * i + (0 if i == 0 else slot if i == n - 1 else slot / 2)
            parts.append(f'<text x="{x:.1f}" y="{HEIGHT - 2}" font-size="9" text-anchor="{anchor}">{escape(labels[i])}</text>')

    def y(value: float) -> float:
        return TOP + plot_h - plot_h * value / top

    if kind == "bars":
        for i, label in enumerate(labels):
            base = 0.0
            for s in series:
                value = s.values[i] or 0
                if not value:
                    continue
                parts.append(
                    f'<rect class="bar" data-series="{escape(s.name)}" data-value="{_fmt(value)}"'
                    f' x="{LEFT + slot * i + slot * 0.1:.1f}"'
                    f' y="{y(base + value):.1f}" width="{max(slot * 0.8, 0.5):.1f}"'
                    f' height="{y(base) - y(base + value):.1f}" fill="{s.color}">'
                    f"<title>{escape(label)} {escape(s.name)}: {escape(_fmt(value))}{escape(unit)}</title></rect>"
                )
                base += value
    else:
        for s in series:
            points = [(LEFT + slot * i + slot / 2, v, labels[i]) for i, v in enumerate(s.values) if v is not None]
            if len(points) > 1:
                path = " ".join(f"{x:.1f},{y(v):.1f}" for x, v, _ in points)
                parts.append(f'<polyline points="{path}" fill="none" stroke="{s.color}" stroke-width="1.5"/>')
            for x, v, label in points:
                parts.append(
                    f'<circle class="point" data-series="{escape(s.name)}" data-value="{_fmt(v)}"'
                    f' cx="{x:.1f}" cy="{y(v):.1f}" r="1.8"'
                    f' fill="{s.color}"><title>{escape(label)} {escape(s.name)}: {escape(_fmt(v))}{escape(unit)}</title></circle>'
                )
    parts.append("</svg>")
    return Markup("".join(parts))


def legend(series: Sequence[Series], total: bool = True, unit: str = "") -> Markup:
    """The chart's key: each series' colour and name, with its total over the window for counts."""
    series = [s if s.color else Series(s.name, s.values, COLORS[i % len(COLORS)]) for i, s in enumerate(series)]
    items = []
    for s in series:
        figure = f" {_fmt(sum(v or 0 for v in s.values))}{unit}" if total else ""
        items.append(f'<span><i class="swatch" style="background:{s.color}"></i>{escape(s.name)}{escape(figure)}</span>')
    return Markup(f'<div class="legend">{"".join(items)}</div>')
