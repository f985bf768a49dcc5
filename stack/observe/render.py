"""`astra dashboards render`: every panel of every dashboard, queried from the running
Prometheus, drawn with matplotlib, one PNG per dashboard under `<run_dir>/dashboards/`.

Grafana does not run here; this is the same PromQL, drawn plainly, so a dashboard
can be looked at (and checked) anywhere Prometheus runs.
"""

from __future__ import annotations

import math
import re
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from stack.observe.dashboards import load

RANGE_SECONDS = 15 * 60
STEP_SECONDS = 15


def concrete(expr: str, variables: dict[str, str]) -> str:
    """Grafana's variables replaced by values Prometheus understands."""
    expr = expr.replace("$__rate_interval", "1m").replace("$__interval", "15s")
    return re.sub(r"\$(\w+)", lambda m: variables.get(m.group(1), m.group(0)), expr)


def legend(template: str, labels: dict[str, str]) -> str:
    text = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template)
    return text.strip() or ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "value"


def query_range(http: httpx.Client, prometheus: str, expr: str) -> list[dict[str, Any]]:
    end = time.time()
    response = http.get(
        f"{prometheus}/api/v1/query_range",
        params={"query": expr, "start": end - RANGE_SECONDS, "end": end, "step": STEP_SECONDS},
    )
    body = response.json()
    if body.get("status") != "success":
        raise ValueError(f"{expr}: {body.get('error')}")
    return list(body["data"]["result"])


def render_dashboards(prometheus: str, out: Path, variables: dict[str, str]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    written = []
    with httpx.Client(timeout=10) as http:
        for name, dashboard in load().items():
            panels = [p for p in dashboard.get("panels", []) if p.get("targets")]
            cols = 2
            rows = math.ceil(len(panels) / cols)
            fig, axes = plt.subplots(rows, cols, figsize=(14, 3.2 * rows), squeeze=False)
            fig.suptitle(str(dashboard.get("title")), fontsize=14)
            for ax, panel in zip(axes.flat, panels, strict=False):
                ax.set_title(panel.get("title", ""), fontsize=10)
                unit = (panel.get("fieldConfig", {}).get("defaults", {}) or {}).get("unit", "")
                for target in panel["targets"]:
                    for series in query_range(
                        http, prometheus, concrete(target["expr"], variables)
                    ):
                        points = [(float(t), float(v)) for t, v in series["values"]]
                        points = [(t, v) for t, v in points if math.isfinite(v)]
                        if not points:
                            continue
                        xs = [datetime.fromtimestamp(t) for t, _ in points]
                        label = legend(target.get("legendFormat", ""), series["metric"])
                        ax.plot(xs, [v for _, v in points], linewidth=1.2, label=label)
                ax.set_ylabel(unit, fontsize=8)
                ax.tick_params(labelsize=7)
                if ax.lines:
                    ax.legend(fontsize=6, loc="upper left")
                else:
                    ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
            for ax in list(axes.flat)[len(panels) :]:
                ax.set_visible(False)
            fig.tight_layout()
            path = out / f"{name}.png"
            fig.savefig(path, dpi=80)
            plt.close(fig)
            written.append(path)
    return written
