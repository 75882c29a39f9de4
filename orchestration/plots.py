"""Small SVG line charts for validation reports, with no plotting library.

:func:`line_chart` draws one or more series on shared axes; :func:`markdown_image` embeds an
SVG in markdown (Dagster's metadata view and most markdown viewers render it).
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import numpy as np

_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#7f7f7f")
_W, _H, _PAD_L, _PAD_R, _PAD_T, _PAD_B = 640, 300, 64, 120, 28, 36


def line_chart(
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    *,
    title: str,
    x_label: str = "",
    y_label: str = "",
    markers: Mapping[str, tuple[Sequence[float], Sequence[float]]] | None = None,
    max_points: int = 800,
    x_dates: bool = False,
) -> str:
    """An SVG chart of ``{name: (x, y)}`` lines (thinned to ``max_points``) and optional dots.

    ``x_dates``: x is UTC epoch seconds, and its ticks are labelled with dates (with times of
    day when the chart spans less than three days)."""
    markers = markers or {}
    xs = [np.asarray(x, np.float64) for x, _ in [*series.values(), *markers.values()]]
    ys = [np.asarray(y, np.float64) for _, y in [*series.values(), *markers.values()]]
    finite_x = np.concatenate([x[np.isfinite(x)] for x in xs]) if xs else np.zeros(1)
    finite_y = np.concatenate([y[np.isfinite(y)] for y in ys]) if ys else np.zeros(1)
    if finite_x.size == 0 or finite_y.size == 0:
        finite_x = finite_y = np.zeros(1)
    x0, x1 = float(finite_x.min()), float(finite_x.max())
    y0, y1 = float(finite_y.min()), float(finite_y.max())
    x1, y1 = (x1 if x1 > x0 else x0 + 1.0), (y1 if y1 > y0 else y0 + 1.0)
    plot_w, plot_h = _W - _PAD_L - _PAD_R, _H - _PAD_T - _PAD_B

    def px(x: np.ndarray) -> np.ndarray:
        return _PAD_L + (x - x0) / (x1 - x0) * plot_w

    def py(y: np.ndarray) -> np.ndarray:
        return _PAD_T + (1.0 - (y - y0) / (y1 - y0)) * plot_h

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" font-family="sans-serif" font-size="11">',
        f'<rect width="{_W}" height="{_H}" fill="white"/>',
        f'<text x="{_W / 2}" y="16" text-anchor="middle" font-size="13">{html.escape(title)}</text>',
        f'<rect x="{_PAD_L}" y="{_PAD_T}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#999"/>',
    ]
    for value in np.linspace(y0, y1, 5):
        y = float(py(np.array(value)))
        parts.append(f'<line x1="{_PAD_L}" x2="{_PAD_L + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>')
        parts.append(f'<text x="{_PAD_L - 4}" y="{y + 4:.1f}" text-anchor="end">{value:.3g}</text>')
    for value in np.linspace(x0, x1, 5):
        x = float(px(np.array(value)))
        label = _date(value, x1 - x0) if x_dates else f"{value:.4g}"
        bottom = _PAD_T + plot_h
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{bottom}" y2="{bottom + 4}" stroke="#999"/>')
        parts.append(f'<text x="{x:.1f}" y="{_PAD_T + plot_h + 15}" text-anchor="middle">{html.escape(label)}</text>')
    if y0 < 0 < y1:
        y = float(py(np.array(0.0)))
        parts.append(f'<line x1="{_PAD_L}" x2="{_PAD_L + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#555"/>')
    parts.append(f'<text x="{_PAD_L + plot_w / 2}" y="{_H - 8}" text-anchor="middle">{html.escape(x_label)}</text>')
    parts.append(
        f'<text x="14" y="{_PAD_T + plot_h / 2}" text-anchor="middle" '
        f'transform="rotate(-90 14 {_PAD_T + plot_h / 2})">{html.escape(y_label)}</text>'
    )
    legend_y = _PAD_T + 10
    for i, (name, (x, y)) in enumerate(series.items()):
        xa, ya = np.asarray(x, np.float64), np.asarray(y, np.float64)
        step = max(1, len(xa) // max_points)
        keep = np.isfinite(xa) & np.isfinite(ya)
        keep[np.arange(len(xa)) % step != 0] = False
        points = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(px(xa[keep]), py(ya[keep]), strict=True))
        color = _COLORS[i % len(_COLORS)]
        parts.append(f'<polyline points="{points}" fill="none" stroke="{color}" stroke-width="1.4"/>')
        parts.append(_legend(legend_y, color, name))
        legend_y += 16
    for j, (name, (x, y)) in enumerate(markers.items()):
        color = _COLORS[(len(series) + j) % len(_COLORS)]
        xa, ya = np.asarray(x, np.float64), np.asarray(y, np.float64)
        for a, b in zip(px(xa), py(ya), strict=True):
            parts.append(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="2.2" fill="{color}"/>')
        parts.append(_legend(legend_y, color, name))
        legend_y += 16
    parts.append("</svg>")
    return "\n".join(parts)


def _date(epoch_s: float, span_s: float) -> str:
    moment = datetime.fromtimestamp(epoch_s, tz=UTC)
    return moment.strftime("%m-%d %H:%M" if span_s < 3 * 86_400 else "%Y-%m-%d")


def _legend(y: float, color: str, name: str) -> str:
    x = _W - _PAD_R + 8
    return (
        f'<line x1="{x}" x2="{x + 14}" y1="{y}" y2="{y}" stroke="{color}" stroke-width="3"/>'
        f'<text x="{x + 18}" y="{y + 4}">{html.escape(name)}</text>'
    )


def markdown_image(svg: str, alt: str) -> str:
    """The SVG as a markdown image with a data URL."""
    return f"![{alt}](data:image/svg+xml;base64,{base64.b64encode(svg.encode()).decode()})"


def markdown_table(rows: Sequence[Mapping[str, object]]) -> str:
    """A markdown table of ``rows`` (keys of the first row are the columns)."""
    if not rows:
        return "(no rows)"
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(c)) for c in columns) + " |")
    return "\n".join(lines)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")
