"""Final evaluation report: raw samples vs. post-optimised, as `report.json` and `report.html`.

Per group (raw / postopt, and any other `source`): number of grasps, lift success rate,
six-direction success rate, mean initial penetration depth, mean contact distance (E_dis / K),
diversity (DexGraspNet's mean per-joint entropy of the joint-angle histogram, in bits), and
time per grasp when the caller gives it.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .hand.asset import FINGER_JOINTS, joint_limits

ENTROPY_BINS = 20


def joint_entropy(q: np.ndarray, bins: int = ENTROPY_BINS) -> float:
    """Mean over the 22 joints of the entropy (bits) of a `bins`-bin histogram over each joint's
    range: 0 when every grasp is the same, log2(bins) when angles fill the range evenly."""
    q = np.asarray(q, dtype=np.float64)
    if len(q) == 0:
        return float("nan")
    lo, hi = joint_limits()
    ent = []
    for j in range(len(FINGER_JOINTS)):
        h, _ = np.histogram(np.clip(q[:, 6 + j], lo[j], hi[j]), bins=bins, range=(lo[j], hi[j]))
        p = h[h > 0] / h.sum()
        ent.append(float(-(p * np.log2(p)).sum()))
    return float(np.mean(ent))


def _mean(df: pd.DataFrame, col: str) -> float | None:
    if col not in df or df[col].isna().all():
        return None
    return float(df[col].astype(float).mean())


def summarise(df: pd.DataFrame, n_contacts: int = 4, seconds: float | None = None) -> dict[str, Any]:
    """Figures for one group of evaluated grasps (columns of the grasp schema; `q` as arrays)."""
    q = np.stack(df["q"].to_numpy()) if len(df) else np.zeros((0, 28))
    out: dict[str, Any] = {
        "n": int(len(df)),
        "success_rate": _mean(df, "lift_success"),
        "six_direction_success_rate": _mean(df, "six_dir_success"),
        "mean_lift_ratio": _mean(df, "lift_ratio"),
        "mean_penetration_depth_m": _mean(df, "penetration_depth"),
        "mean_contact_distance_m": None if _mean(df, "E_dis") is None else _mean(df, "E_dis") / n_contacts,
        "diversity_joint_entropy_bits": joint_entropy(q),
        "n_objects": int(df["object_id"].nunique()) if len(df) else 0,
    }
    if seconds is not None and len(df):
        out["seconds_per_grasp"] = seconds / len(df)
    return out


def _png_base64(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    return base64.b64encode(buf.getvalue()).decode()


def _histograms(groups: Mapping[str, pd.DataFrame]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = [
        c
        for c in ("lift_ratio", "penetration_depth", "E_dis", "energy")
        if any(c in g for g in groups.values())
    ]
    fig, axes = plt.subplots(1, len(cols), figsize=(4 * len(cols), 3))
    for ax, col in zip(np.atleast_1d(axes), cols, strict=True):
        for name, g in groups.items():
            if col in g and g[col].notna().any():
                ax.hist(g[col].dropna().astype(float), bins=30, alpha=0.6, label=name)
        ax.set_title(col)
        ax.legend()
    fig.tight_layout()
    data = _png_base64(fig)
    plt.close(fig)
    return f'<img src="data:image/png;base64,{data}">'


def write_report(
    out_dir: Path,
    groups: Mapping[str, pd.DataFrame],
    extra: Mapping[str, Any] | None = None,
    pictures: Mapping[str, Path] | None = None,
    seconds: Mapping[str, float] | None = None,
    n_contacts: int = 4,
) -> dict[str, Any]:
    """Write `report.json` and `report.html` into `out_dir`; returns the JSON document.

    `groups` maps a name ("raw", "postopt", ...) to its evaluated grasps; `pictures` maps a caption
    to a PNG inside `out_dir`; `extra` goes into the JSON as is (commands, config digest, rounds).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {
        name: summarise(df, n_contacts, (seconds or {}).get(name)) for name, df in groups.items()
    }
    doc.update(extra or {})
    tmp = out_dir / ".report.json.tmp"
    tmp.write_text(json.dumps(doc, indent=2, default=float))
    tmp.replace(out_dir / "report.json")

    rows = "".join(
        f"<tr><th>{html.escape(name)}</th>"
        + "".join(f"<td>{_fmt(doc[name].get(k))}</td>" for k in _COLUMNS)
        + "</tr>"
        for name in groups
    )
    head = "".join(f"<th>{html.escape(label)}</th>" for label in _COLUMNS.values())
    pics = "".join(
        f'<figure><img src="{html.escape(p.name)}" style="max-width:100%"><figcaption>{html.escape(c)}'
        "</figcaption></figure>"
        for c, p in (pictures or {}).items()
    )
    extra_html = html.escape(json.dumps(extra or {}, indent=2, default=str))
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>DexLite evaluation</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #999;padding:4px 8px;text-align:right}}</style></head><body>
<h1>DexLite evaluation</h1>
<p>Lift test: the hand closes on the object, lifts it 1 m; success when object rise / hand rise &gt; 0.9.
Six-direction test: from the closed grasp, a 1 g push along &plusmn;x, &plusmn;y, &plusmn;z; success when
the object moves &lt; 2 cm and turns &lt; 15&deg; in all six.</p>
<table><tr><th>group</th>{head}</tr>{rows}</table>
<h2>Distributions</h2>{_histograms(groups)}
<h2>Grasps</h2>{pics}
<h2>Run</h2><pre>{extra_html}</pre></body></html>"""
    tmp = out_dir / ".report.html.tmp"
    tmp.write_text(page)
    tmp.replace(out_dir / "report.html")
    return doc


_COLUMNS = {
    "n": "grasps",
    "n_objects": "objects",
    "success_rate": "lift success",
    "six_direction_success_rate": "6-direction success",
    "mean_lift_ratio": "mean lift ratio",
    "mean_penetration_depth_m": "penetration (m)",
    "mean_contact_distance_m": "contact distance (m)",
    "diversity_joint_entropy_bits": "joint entropy (bits)",
    "seconds_per_grasp": "s / grasp",
}


def _fmt(v: Any) -> str:
    if v is None:
        return "&ndash;"
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"
    return html.escape(str(v))
