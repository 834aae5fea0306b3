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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from storage.artifacts import atomic_write_text

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


def summarise(df: pd.DataFrame, n_contacts: int = 4, seconds_per_grasp: float | None = None) -> dict[str, Any]:
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
    if seconds_per_grasp is not None:
        out["seconds_per_grasp"] = seconds_per_grasp
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
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.tight_layout()
    data = _png_base64(fig)
    plt.close(fig)
    return f'<img src="data:image/png;base64,{data}">'


SOURCES = ("raw", "expanded", "postopt")
ROUND_FIELDS = ("n", "success_rate", "six_direction_success_rate", "diversity_joint_entropy_bits")


def headline(df: pd.DataFrame, val_ids: Sequence[str]) -> pd.Series:
    """Rows of `df` the headline figures use: the validation objects' when any were evaluated,
    else every row (`(len(df),)` bool)."""
    val = df["object_id"].isin(list(val_ids))
    return val if val.any() else pd.Series(True, index=df.index)


def evaluation(
    df: pd.DataFrame,
    val_ids: Sequence[str],
    seconds: Mapping[str, float] | None = None,
    n_contacts: int = 4,
) -> dict[str, Any]:
    """Figures of evaluated grasps `df` (grasp schema + lift columns), by source; `seconds`: seconds
    per grasp to produce each source (e.g. post-optimisation), reported beside it.

    The headline (top-level ``raw`` / ``expanded`` / ``postopt``) is computed on the validation
    objects `val_ids` (never trained on) when any were evaluated, else on every object; the other
    objects' figures go under ``train_objects``. ``per_object`` gives each object's rates.
    """
    on_val = df["object_id"].isin(list(val_ids)).any()
    in_head = headline(df, val_ids)
    head, rest = df[in_head], df[~in_head]
    doc: dict[str, Any] = {"evaluated_on": "validation objects" if on_val else "training objects"}
    for src in SOURCES:
        part = head[head["source"] == src]
        if len(part):
            doc[src] = summarise(part, n_contacts, (seconds or {}).get(src))
    if len(rest):
        doc["train_objects"] = {src: summarise(rest[rest["source"] == src], n_contacts)
                                for src in SOURCES if (rest["source"] == src).any()}
    doc["per_object"] = {
        str(oid): {str(src): {"n": int(len(g)), "success_rate": _mean(g, "lift_success"),
                              "validation": bool(oid in set(val_ids))}
                   for src, g in part.groupby("source")}
        for oid, part in df.groupby("object_id")
    }  # fmt: skip
    return doc


def strict_rates(strict: pd.DataFrame, val_ids: Sequence[str]) -> dict[str, Any]:
    """Lift success under the stricter protocol, by source, on the same objects as the headline
    (`strict`: object_id, source, lift_success per grasp)."""
    head = strict[headline(strict, val_ids)]
    return {str(src): {"n": int(len(g)), "success_rate": float(g["lift_success"].mean())}
            for src, g in head.groupby("source")}


def round_row(doc: Mapping[str, Any], round_no: int, dataset_grasps: int | None) -> dict[str, Any]:
    """One line of the per-round table (the Dex1B loop): headline rates and diversity per source."""
    row: dict[str, Any] = {"round": round_no, "dataset_grasps": dataset_grasps}
    for src in SOURCES:
        if src in doc:
            row[src] = {k: doc[src].get(k) for k in ROUND_FIELDS}
            strict = (doc.get("strict") or {}).get(src)
            if strict:
                row[src]["strict_success_rate"] = strict["success_rate"]
    return row


def write_report(
    out_dir: Path,
    doc: Mapping[str, Any],
    groups: Mapping[str, pd.DataFrame],
    pictures: Mapping[str, Path] | None = None,
) -> None:
    """Write ``report.json`` (`doc`), ``report.html`` and ``report.md`` into `out_dir`, atomically.

    `doc` is :func:`evaluation`'s document plus run facts (``rounds``, ``seed``, ``lift_config``...);
    `groups` the headline grasps per source (histograms); `pictures` caption -> PNG in `out_dir`.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "report.json", json.dumps(doc, indent=2, default=_json_default))
    atomic_write_text(out_dir / "report.md", render_markdown(doc))

    def table(section: Mapping[str, Any], title: str) -> str:
        head = "".join(f"<th>{html.escape(label)}</th>" for label in _COLUMNS.values())
        rows = "".join(
            f"<tr><th>{html.escape(src)}</th>" + "".join(f"<td>{_fmt(section[src].get(k))}</td>" for k in _COLUMNS)
            + "</tr>" for src in SOURCES if src in section
        )  # fmt: skip
        return f"<h2>{html.escape(title)}</h2><table><tr><th>grasps</th>{head}</tr>{rows}</table>"

    tables = table(doc, f"Evaluated on {doc.get('evaluated_on', 'all objects')}")
    strict = doc.get("strict") or {}
    if any(src in strict for src in SOURCES):
        p = strict.get("protocol", {})
        cells = "".join(f"<tr><th>{src}</th><td>{strict[src]['n']}</td>"
                        f"<td>{_fmt(strict[src]['success_rate'])}</td></tr>" for src in SOURCES if src in strict)
        tables += (f"<h2>Stricter lift test (friction {_fmt(p.get('friction'))}, squeeze {_fmt(p.get('squeeze'))} rad; "
                   f"same grasps)</h2><table><tr><th>grasps</th><th>n</th><th>lift success</th></tr>{cells}</table>")
    if doc.get("train_objects"):
        tables += table(doc["train_objects"], "Training objects (seen in training)")
    rounds = doc.get("rounds") or []
    if len(rounds) > 1:
        cells = "".join(f"<th>{s} success</th><th>{s} entropy</th>" for s in SOURCES)
        body = "".join(
            f"<tr><th>{r['round']}</th><td>{_fmt(r.get('dataset_grasps'))}</td>"
            + "".join(f"<td>{_fmt((r.get(s) or {}).get('success_rate'))}</td>"
                      f"<td>{_fmt((r.get(s) or {}).get('diversity_joint_entropy_bits'))}</td>" for s in SOURCES)
            + "</tr>" for r in rounds
        )  # fmt: skip
        tables += f"<h2>Rounds</h2><table><tr><th>round</th><th>dataset grasps</th>{cells}</tr>{body}</table>"
    pics = "".join(
        f'<figure><img src="{html.escape(p.name)}" style="max-width:100%"><figcaption>{html.escape(c)}'
        "</figcaption></figure>"
        for c, p in (pictures or {}).items()
    )
    run = {k: v for k, v in doc.items() if k not in (*SOURCES, "train_objects", "per_object", "rounds")}
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>DexLite evaluation</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin-bottom:1em}}
td,th{{border:1px solid #999;padding:4px 8px;text-align:right}}</style></head><body>
<h1>DexLite evaluation</h1>
<p>Lift test (MuJoCo): the hand closes on the object and lifts it 1 m; success when object rise / hand
rise &gt; 0.9. Six-direction test: from the closed grasp, a 1 g push along &plusmn;x, &plusmn;y,
&plusmn;z; success when the object moves &lt; 2 cm and turns &lt; 15&deg; in all six. Raw: CVAE samples
(z ~ N(0, I)); expanded: encoded dataset grasps with a perturbed latent; postopt: raw samples after the
200-step post-optimisation.</p>
{tables}
<h2>Distributions ({html.escape(str(doc.get("evaluated_on", "")))})</h2>{_histograms(groups) if groups else ""}
<h2>Grasps</h2>{pics}
<h2>Run</h2><pre>{html.escape(json.dumps(run, indent=2, default=_json_default))}</pre></body></html>"""
    atomic_write_text(out_dir / "report.html", page)


def render_markdown(doc: Mapping[str, Any]) -> str:
    """``report.md``: the headline table and the per-round table as Markdown."""

    def pct(x: Any) -> str:
        return "n/a" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{100 * x:.1f}%"

    lines = ["# DexLite evaluation", ""]
    o, s = doc.get("objects", {}), doc.get("seed", {})
    if o:
        lines.append(f"Objects: {o.get('ingested')} ingested, {o.get('kept_by_stability')} kept by the stability "
                     "filter.")
    if s:
        lines.append(f"Seed grasps: {s.get('n')} lift-tested, success {pct(s.get('success_rate'))}, six-direction "
                     f"{pct(s.get('six_direction_success_rate'))}.")
    for title, section in ((f"Evaluated on {doc.get('evaluated_on')}", doc),
                           ("Training objects", doc.get("train_objects") or {})):
        if not any(src in section for src in SOURCES):
            continue
        lines += ["", f"## {title}", "", "| grasps | n | lift success | six-direction | joint entropy (bits) |",
                  "| --- | --- | --- | --- | --- |"]
        for src in SOURCES:
            if src in section:
                r = section[src]
                ent = r.get("diversity_joint_entropy_bits")
                lines.append(f"| {src} | {r['n']} | {pct(r.get('success_rate'))} | "
                             f"{pct(r.get('six_direction_success_rate'))} | {'n/a' if ent is None else f'{ent:.2f}'} |")
    strict = doc.get("strict") or {}
    if any(src in strict for src in SOURCES):
        p = strict.get("protocol", {})
        lines += ["", f"## Stricter lift test (friction {p.get('friction')}, squeeze {p.get('squeeze')} rad)", "",
                  "| grasps | n | lift success |", "| --- | --- | --- |"]
        lines += [f"| {src} | {strict[src]['n']} | {pct(strict[src]['success_rate'])} |" for src in SOURCES
                  if src in strict]
    rounds = doc.get("rounds") or []
    if len(rounds) > 1:
        lines += ["", "## Rounds", "", "| round | dataset grasps | raw | expanded | postopt |",
                  "| --- | --- | --- | --- | --- |"]
        for r in rounds:
            cells = " | ".join(pct((r.get(src) or {}).get("success_rate")) for src in SOURCES)
            lines.append(f"| {r['round']} | {r.get('dataset_grasps')} | {cells} |")
    return "\n".join(lines) + "\n"


def _json_default(x: Any) -> Any:
    if isinstance(x, (np.floating, np.integer, np.bool_)):
        return x.item()
    return str(x)


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
