"""Bar charts as inline SVG, drawn on the server: no script, no chart library, nothing fetched.
Each chart comes with the same numbers as a table, for screen readers and for copying."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

from concierge.ops.html import Markup, esc

WIDTH, HEIGHT = 720, 240
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 12, 40
COLOURS = ("#2f6f9f", "#e08a2c", "#5a9f4a", "#9f4a8a")


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    values: Sequence[float | None]  # None: no data that day (drawn as a gap, shown as "–")


def _nice_top(peak: float) -> float:
    if peak <= 0:
        return 1.0
    step = float(10 ** (len(str(int(peak))) - 1))
    for factor in (1, 2, 2.5, 5, 10):
        if peak <= factor * step:
            return factor * step
    return 10 * step


def _number(value: float | None, decimals: int) -> str:
    if value is None:
        return "–"
    return f"{value:,.{decimals}f}"


def _tick(value: float) -> str:
    # Grid lines fall on quarters of a round top: 0.5 or 12.5 must not print as 0 or 12.
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def bar_chart(
    title: str, labels: Sequence[str], series: Sequence[Series], *, decimals: int = 0, unit: str = ""
) -> Markup:
    """Grouped bars, one group per label; y axis from zero with four grid lines."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    peak = max((v for s in series for v in s.values if v is not None), default=0.0)
    top = _nice_top(peak)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{html.escape(title)}">'
    ]
    for step in range(5):
        y = TOP + plot_h - plot_h * step / 4
        value = top * step / 4
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        parts.append(
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end" fill="#555">'
            f"{esc(_tick(value))}</text>"
        )
    count = max(len(labels), 1)
    group_w = plot_w / count
    bar_w = max(group_w * 0.8 / max(len(series), 1), 1.0)
    label_every = max(1, count // 10)
    for index, label in enumerate(labels):
        x0 = LEFT + index * group_w + group_w * 0.1
        for s_index, s in enumerate(series):
            shown = s.values[index]
            if shown is None or shown <= 0:
                continue
            height = plot_h * shown / top
            x = x0 + s_index * bar_w
            parts.append(
                f'<rect x="{x:.1f}" y="{TOP + plot_h - height:.1f}" width="{bar_w:.1f}" '
                f'height="{height:.1f}" fill="{COLOURS[s_index % len(COLOURS)]}">'
                f"<title>{esc(f'{label} {s.name}: {_number(shown, decimals)}{unit}')}</title></rect>"
            )
        if index % label_every == 0:
            parts.append(
                f'<text x="{x0 + group_w * 0.4:.1f}" y="{HEIGHT - BOTTOM + 16}" font-size="11" '
                f'text-anchor="middle" fill="#333">{esc(label)}</text>'
            )
    for s_index, s in enumerate(series):
        x, colour = LEFT + s_index * 160, COLOURS[s_index % len(COLOURS)]
        parts.append(
            f'<rect x="{x}" y="{HEIGHT - 14}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{x + 14}" y="{HEIGHT - 5}" font-size="11" fill="#333">{esc(s.name)}</text>'
        )
    parts.append("</svg>")
    header = "".join(f'<th scope="col">{esc(s.name)}</th>' for s in series)
    rows = "".join(
        f'<tr><th scope="row">{esc(label)}</th>'
        + "".join(f"<td>{esc(_number(s.values[i], decimals))}</td>" for s in series)
        + "</tr>"
        for i, label in enumerate(labels)
    )
    slug = "".join(c if c.isalnum() else "-" for c in title.lower())
    return Markup(
        f'<figure id="chart-{html.escape(slug)}"><figcaption>{esc(title)}</figcaption>{"".join(parts)}'
        f"<details><summary>Numbers</summary><table><thead><tr><th>{esc('')}</th>{header}</tr></thead>"
        f"<tbody>{rows}</tbody></table></details></figure>"
    )
