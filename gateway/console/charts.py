"""Bar charts as SVG markup, rendered on the server (no chart library, no script)."""

from __future__ import annotations

import time

from markupsafe import Markup, escape

from gateway.ops.admin import Throughput

WIDTH, HEIGHT, PAD = 480, 120, 18


def bar_chart(series: Throughput, title: str) -> Markup:
    """Bars of ``series.counts`` (oldest left), a y-axis maximum and start/end time labels."""
    counts = series.counts
    top = max(max(counts, default=0), 1)
    step = (WIDTH - 2 * PAD) / max(len(counts), 1)
    bars = []
    for i, count in enumerate(counts):
        h = (HEIGHT - 2 * PAD) * count / top
        x = PAD + i * step
        y = HEIGHT - PAD - h
        bars.append(
            f'<rect class="bar" x="{x + 1:.1f}" y="{y:.1f}" width="{max(step - 2, 1):.1f}" height="{h:.1f}">'
            f"<title>{count}</title></rect>"
        )
    start = series.end - series.bucket_s * len(counts)
    fmt = "%H:%M" if series.bucket_s < 3600 else "%a %H:%M"
    labels = (
        f'<text x="{PAD}" y="{HEIGHT - 4}" class="axis">{time.strftime(fmt, time.localtime(start))}</text>'
        f'<text x="{WIDTH - PAD}" y="{HEIGHT - 4}" class="axis" text-anchor="end">now</text>'
        f'<text x="{PAD}" y="{PAD - 6}" class="axis">max {top} / {series.bucket_s // 60} min</text>'
    )
    axis = f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" class="baseline"/>'
    return Markup(
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}">'
        f"<title>{escape(title)}: {sum(counts)}</title>{axis}{''.join(bars)}{labels}</svg>"
    )
