"""Final evaluation report: the no-CVAE baseline vs. raw samples vs. expanded vs. post-optimised, as
`report.json`, `report.md` and `report.html`.

Every grasp goes through two named MuJoCo protocols (:mod:`dexlite_core.validity`): ``lift`` (the
write-up's 1 m lift, plus the six-direction test) and ``dexgraspbench`` (DexGraspBench's squeeze and
six pushes). A grasp counts as a success only when it passes the protocol AND is physically valid:
hand-object and hand-hand penetration <= ``max_penetration`` (5 mm; 1 mm beside it). Every rate
carries its n and a 95% Wilson interval (:mod:`dexlite_core.stats`).

Per group (baseline / raw / expanded / postopt; baseline: DexGraspNet's initialisation followed by
the post-optimisation's annealing steps, no CVAE, the compute-matched baseline): the rates per
protocol (valid, valid at 1 mm, ungated), six-direction rate, unstable simulations, penetration and
self-penetration (mm), contact count, Ferrari-Canny q1, mean contact distance (E_dis / K), diversity
(DexGraspNet's per-joint entropy in bits over 20 bins, DGTR's in nats over 100 bins, DexGraspBench's
PCA cumulative variance of the top 5 components) and time per grasp when the caller gives it.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import validity
from .atomic import atomic_write_text
from .hand.asset import FINGER_JOINTS, joint_limits
from .hand.euler_np import euler_to_matrix_np
from .stats import format_rate, rate_entry

ENTROPY_BINS = 20
ENTROPY_BINS_NATS = 100  # DGTR / DexGraspNet evaluator: 100 bins per joint, natural log
PCA_COMPONENTS = 5  # DexGraspBench: cumulative explained variance of the top 5 components
SOURCES = ("baseline", "raw", "expanded", "postopt")


def source_label(src: str, doc: Mapping[str, Any] | None = None) -> str:
    """A source as the tables name it: the baseline spelled out (its step count from the run report's
    ``baseline_steps`` when given), the others by their key."""
    if src != "baseline":
        return src
    steps = (doc or {}).get("baseline_steps")
    return f"no CVAE (init + {steps} steps)" if steps else "no CVAE (init + post-opt steps)"


def joint_entropy(q: np.ndarray, bins: int = ENTROPY_BINS, base: float = 2.0) -> float:
    """Mean over the 22 joints of the entropy (bits for ``base=2``) of a `bins`-bin histogram over
    each joint's range: 0 when every grasp is the same, log_base(bins) when angles fill the range
    evenly."""
    q = np.asarray(q, dtype=np.float64)
    if len(q) == 0:
        return float("nan")
    lo, hi = joint_limits()
    ent = []
    for j in range(len(FINGER_JOINTS)):
        h, _ = np.histogram(np.clip(q[:, 6 + j], lo[j], hi[j]), bins=bins, range=(lo[j], hi[j]))
        p = h[h > 0] / h.sum()
        ent.append(float(-(p * np.log(p)).sum() / math.log(base)))
    return float(np.mean(ent))


def joint_entropy_nats(q: np.ndarray) -> float:
    """The DGTR / DexGraspNet evaluator's diversity: each joint's range split into 100 bins, the
    histogram's entropy in nats, mean over the 22 joints (0 for identical grasps, ln 100 = 4.61
    at most)."""
    return joint_entropy(q, ENTROPY_BINS_NATS, base=math.e)


def pose_features(q: np.ndarray) -> np.ndarray:
    """`(N, 28)` poses -> `(N, 28)` ``[translation (3), axis-angle (3), 22 joints]`` (DexGraspBench's
    pose vector for its PCA diversity)."""
    from scipy.spatial.transform import Rotation

    q = np.asarray(q, dtype=np.float64).reshape(-1, 28)
    rotvec = Rotation.from_matrix(euler_to_matrix_np(q[:, 3:6])).as_rotvec() if len(q) else np.zeros((0, 3))
    return np.concatenate([q[:, :3], rotvec, q[:, 6:]], axis=1)


def pca_cumvar(q: np.ndarray, k: int = PCA_COMPONENTS) -> float | None:
    """DexGraspBench's diversity: cumulative explained variance ratio of the top `k` principal
    components of :func:`pose_features` (lower = more diverse; 1.0 when the grasps vary in <= `k`
    directions). None for fewer than 2 grasps or no variation at all."""
    x = pose_features(q)
    if len(x) < 2:
        return None
    scale = max(1.0, float(np.abs(x).max()))
    x = x - x.mean(axis=0)
    var = np.linalg.svd(x, compute_uv=False) ** 2
    total = float(var.sum())
    # identical grasps leave only the mean's rounding (~1e-16 * scale): no variation to explain
    if not np.isfinite(total) or total <= len(x) * (1e-12 * scale) ** 2:
        return None
    return float(min(1.0, var[:k].sum() / total))


# ------------------------------------------------------------------------------------------ figures


def _values(df: pd.DataFrame, col: str) -> np.ndarray | None:
    """Non-null values of `col` as float64; None when the column is missing or all null."""
    if col not in df:
        return None
    v = pd.to_numeric(df[col], errors="coerce").astype(np.float64).to_numpy()
    v = v[np.isfinite(v)]
    return v if len(v) else None


def _mean(df: pd.DataFrame, col: str) -> float | None:
    v = _values(df, col)
    return None if v is None else float(v.mean())


def _mm(df: pd.DataFrame, col: str, stats: Sequence[str]) -> dict[str, float] | None:
    v = _values(df, col)
    if v is None:
        return None
    v = 1000.0 * v
    funcs = {"mean": np.mean, "median": np.median, "p90": lambda a: np.percentile(a, 90), "max": np.max}
    return {s: float(funcs[s](v)) for s in stats}


def _poses(df: pd.DataFrame) -> np.ndarray:
    return np.stack([np.asarray(x, dtype=np.float64) for x in df["q"]]) if len(df) else np.zeros((0, 28))


def _entry(rates: Mapping[str, Any], key: str) -> tuple[float | None, list[float | None]]:
    e = rates.get(key)
    return (None, [None, None]) if e is None else (e["rate"], list(e["ci95"]))


def summarise(
    df: pd.DataFrame,
    n_contacts: int = 4,
    seconds_per_grasp: float | None = None,
    protocols: Sequence[str] = validity.PROTOCOLS,
    max_penetration: float = validity.DEFAULT_MAX_PENETRATION,
) -> dict[str, Any]:
    """Figures for one group of evaluated grasps (columns of the grasp schema; `q` as arrays; without
    a `q` column, e.g. bare simulation results, the diversity figures are None)."""
    q = _poses(df) if "q" in df else None
    rates = validity.rate_table(df, protocols, max_penetration)
    lift, lift_ci = _entry(rates, "lift")
    six, six_ci = _entry(rates, "six_direction")
    ungated, ungated_ci = _entry(rates, "lift_ungated")
    e_dis = _mean(df, "E_dis")
    q1 = pd.to_numeric(df["q1"], errors="coerce") if _values(df, "q1") is not None else None
    out: dict[str, Any] = {
        "n": int(len(df)),
        "n_objects": int(df["object_id"].nunique()) if len(df) else 0,
        "rates": rates,
        "sim_unstable": validity.unstable_counts(df, protocols),
        "gated_on": validity.gate_columns(df),
        # legacy scalars: the lift protocol, valid (gated) unless named ungated
        "success_rate": lift,
        "success_rate_ci95": lift_ci,
        "six_direction_success_rate": six,
        "six_direction_success_rate_ci95": six_ci,
        "ungated_success_rate": ungated,
        "ungated_success_rate_ci95": ungated_ci,
        "mean_lift_ratio": _mean(df, "lift_ratio"),
        "penetration_mm": _mm(df, "penetration_depth", ("mean", "median", "p90", "max")),
        "mean_penetration_depth_m": _mean(df, "penetration_depth"),
        "self_penetration_mm": _mm(df, "self_penetration", ("mean", "max")),
        "mean_contact_count": _mean(df, "contact_count"),
        "mean_q1": _mean(df, "q1"),
        "q1_positive_rate": None if q1 is None else rate_entry((q1 > 0).astype(object).where(q1.notna(), None)),
        "mean_contact_distance_m": None if e_dis is None else e_dis / n_contacts,
        "diversity_joint_entropy_bits": None if q is None else joint_entropy(q),
        "diversity_joint_entropy_nats": None if q is None else joint_entropy_nats(q),
        "diversity_pca_cumvar5": None if q is None else pca_cumvar(q),
    }
    if seconds_per_grasp is not None:
        out["seconds_per_grasp"] = seconds_per_grasp
    return out


def headline(df: pd.DataFrame, val_ids: Sequence[str], test_ids: Sequence[str] = ()) -> pd.Series:
    """Rows of `df` the headline figures use: the validation objects' when any were evaluated,
    else every row but the test objects' (`(len(df),)` bool). Test objects never enter the headline."""
    val = df["object_id"].isin(list(val_ids))
    return val if val.any() else ~df["object_id"].isin(list(test_ids))


def evaluation(
    df: pd.DataFrame,
    val_ids: Sequence[str],
    seconds: Mapping[str, float] | None = None,
    n_contacts: int = 4,
    protocols: Sequence[str] = validity.PROTOCOLS,
    max_penetration: float = validity.DEFAULT_MAX_PENETRATION,
    test_ids: Sequence[str] = (),
) -> dict[str, Any]:
    """Figures of evaluated grasps `df` (grasp schema + protocol and analytic columns), by source;
    `seconds`: seconds per grasp to produce each source (e.g. post-optimisation), reported beside it.

    The headline (top-level ``baseline`` / ``raw`` / ``expanded`` / ``postopt``) is computed on the validation
    objects `val_ids` (never trained on) when any were evaluated, else on every object but the test
    objects; the test objects `test_ids` (never trained on, never used for a choice: the final
    table only) go under ``test_objects``, the remaining objects under ``train_objects``.
    ``per_object`` gives each object's rates (``validation`` / ``test`` flags); ``protocols`` the
    protocols of `protocols` that were run, ``max_penetration_m`` the gate.
    """
    protocols = tuple(protocols)
    unknown = sorted(set(protocols) - set(validity.PROTOCOLS))
    if unknown:
        raise ValueError(f"unknown protocol(s) {unknown}; known: {list(validity.PROTOCOLS)}")
    on_val = df["object_id"].isin(list(val_ids)).any()
    in_test = df["object_id"].isin(list(test_ids)) & ~df["object_id"].isin(list(val_ids))
    in_head = headline(df, val_ids, test_ids)
    head, rest, test = df[in_head], df[~in_head & ~in_test], df[in_test]
    doc: dict[str, Any] = {
        "evaluated_on": "validation objects" if on_val else "training objects" if len(head) else "no objects",
        "protocols": [p for p in protocols if validity.was_run(df, p)],
        "max_penetration_m": float(max_penetration),
    }

    def summary(part: pd.DataFrame, secs: float | None = None) -> dict[str, Any]:
        return summarise(part, n_contacts, secs, protocols, max_penetration)

    for src in SOURCES:
        part = head[head["source"] == src]
        if len(part):
            doc[src] = summary(part, (seconds or {}).get(src))
    if len(rest):
        doc["train_objects"] = {src: summary(rest[rest["source"] == src])
                                for src in SOURCES if (rest["source"] == src).any()}  # fmt: skip
    if len(test):
        doc["test_objects"] = {src: summary(test[test["source"] == src])
                               for src in SOURCES if (test["source"] == src).any()}  # fmt: skip
    val_set = {str(v) for v in val_ids}
    test_set = {str(v) for v in test_ids} - val_set
    per_object: dict[str, Any] = {}
    for oid, part in df.groupby("object_id"):
        per_object[str(oid)] = {}
        for src, g in part.groupby("source"):
            rates = validity.rate_table(g, protocols, max_penetration)
            per_object[str(oid)][str(src)] = {
                "n": int(len(g)),
                "validation": str(oid) in val_set,
                "test": str(oid) in test_set,
                "success_rate": rates["lift"]["rate"] if "lift" in rates else None,
                "rates": {k: {"rate": e["rate"], "ci95": e["ci95"]} for k, e in rates.items()},
            }
    doc["per_object"] = per_object
    return doc


ROUND_RATES = (*validity.PROTOCOLS, "six_direction")


def round_row(doc: Mapping[str, Any], round_no: int, dataset_grasps: int | None) -> dict[str, Any]:
    """One line of the per-round table (the Dex1B loop), per source: n, each protocol's valid rate
    and the six-direction rate (``rates``: rate entries with n and ci95), joint entropy (bits); the
    headline's (validation objects) at the top level, the test objects' under ``test_objects``."""

    def cells(section: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for src in SOURCES:
            if src in section:
                d = section[src]
                rates = d.get("rates") or {}
                out[src] = {
                    "n": d.get("n"),
                    "rates": {k: rates[k] for k in ROUND_RATES if k in rates},
                    "success_rate": d.get("success_rate"),
                    "six_direction_success_rate": d.get("six_direction_success_rate"),
                    "diversity_joint_entropy_bits": d.get("diversity_joint_entropy_bits"),
                }
        return out

    row: dict[str, Any] = {"round": round_no, "dataset_grasps": dataset_grasps, **cells(doc)}
    if doc.get("test_objects"):
        row["test_objects"] = cells(doc["test_objects"])
    return row


# ------------------------------------------------------------------------------------------ tables


def _num(x: Any, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.{digits}f}"


def _pct(x: Any) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{100 * x:.1f}%"


def _headline_header() -> list[str]:
    ps = validity.PROTOCOLS
    return ["grasps", "n", *(f"{p} valid [95% CI]" for p in ps), *(f"{p} ungated" for p in ps),
            *(f"{p} @1 mm" for p in ps), "six-direction", "penetration median/p90 (mm)", "q1 mean",
            "entropy (bits)", "PCA cum. var. (top 5)"]  # fmt: skip


def _headline_cells(src: str, r: Mapping[str, Any]) -> list[str]:
    """One row of the headline table (plain text; 'n/a' where a protocol or metric is missing)."""
    rates = r.get("rates") or {}
    ps = validity.PROTOCOLS
    pen = r.get("penetration_mm") or {}
    pen_cell = "n/a" if not pen else f"{_num(pen.get('median'))} / {_num(pen.get('p90'))}"
    return [src, str(r.get("n")), *(format_rate(rates.get(p)) for p in ps),
            *(format_rate(rates.get(f"{p}_ungated")) for p in ps), *(format_rate(rates.get(f"{p}_1mm")) for p in ps),
            format_rate(rates.get("six_direction")), pen_cell, _num(r.get("mean_q1"), 4),
            _num(r.get("diversity_joint_entropy_bits")), _num(r.get("diversity_pca_cumvar5"), 3)]  # fmt: skip


def _gate_line(doc: Mapping[str, Any], section: Mapping[str, Any]) -> str:
    """What 'valid' means and how many simulations went unstable, per source."""
    gate = doc.get("max_penetration_m", validity.DEFAULT_MAX_PENETRATION)
    parts = []
    for src in SOURCES:
        counts = (section.get(src) or {}).get("sim_unstable") if src in section else None
        if counts:
            parts.append(f"{src}: " + ", ".join(f"{p} {n}" for p, n in counts.items()))
    unstable = "; ".join(parts) if parts else "not recorded"
    missing = [f"{col} ({src})" for src in SOURCES if src in section and "gated_on" in section[src]
               for col in validity.PENETRATION_COLUMNS if col not in section[src]["gated_on"]]  # fmt: skip
    ungated = f" Not measured, so not gated on: {', '.join(missing)}." if missing else ""
    return (f"valid = passes the protocol and penetration and self-penetration <= {1000 * gate:g} mm "
            f"(@1 mm: <= 1 mm; ungated: the protocol's verdict alone). Unstable simulations (counted as "
            f"failures): {unstable}.{ungated}")  # fmt: skip


def _round_sources(rounds: Sequence[Mapping[str, Any]]) -> list[str]:
    return [s for s in SOURCES if any(r.get(s) for r in rounds)]


def _round_cells(r: Mapping[str, Any], sources: Sequence[str]) -> list[str]:
    cells = [str(r.get("round")), str(r.get("dataset_grasps"))]
    for s in sources:
        d = r.get(s) or {}
        rates = d.get("rates")
        for p in validity.PROTOCOLS:
            if rates is not None:
                cells.append(format_rate(rates.get(p)))
            else:  # a row of an older report: the lift rate alone, no interval
                cells.append(_pct(d.get("success_rate")) if p == "lift" else "n/a")
        cells.append(_num(d.get("diversity_joint_entropy_bits")))
    return cells


def _round_header(sources: Sequence[str]) -> list[str]:
    per_source = [(*(f"{s} {p} valid" for p in validity.PROTOCOLS), f"{s} entropy") for s in sources]
    return ["round", "dataset grasps", *(h for hs in per_source for h in hs)]


TEST_TITLE = "Test objects: final table only (never trained on, never used for any choice)"


def _sections(doc: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    return [(f"Evaluated on {doc.get('evaluated_on', 'all objects')}", doc),
            (TEST_TITLE, doc.get("test_objects") or {}),
            ("Training objects (seen in training)", doc.get("train_objects") or {})]  # fmt: skip


def _round_tables(rounds: Sequence[Mapping[str, Any]]) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) of the per-round tables: the headline's, and the test objects' when
    any round evaluated test objects."""
    tables = []
    for title, rows in (("Rounds", list(rounds)),
                        ("Rounds, test objects", [{**(r.get("test_objects") or {}), "round": r.get("round"),
                                                   "dataset_grasps": r.get("dataset_grasps")} for r in rounds])):
        sources = _round_sources(rows)
        if sources or title == "Rounds":
            tables.append((title, _round_header(sources), [_round_cells(r, sources) for r in rows]))
    return tables


def render_markdown(doc: Mapping[str, Any]) -> str:
    """``report.md``: the headline table (both protocols side by side, every rate with its 95%
    Wilson interval and n), the training objects' and the per-round table as Markdown."""

    def md_row(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "/") for c in cells) + " |"

    lines = ["# DexLite evaluation", ""]
    o, s = doc.get("objects", {}), doc.get("seed", {})
    if o:
        lines.append(f"Objects: {o.get('ingested')} ingested, {o.get('kept_by_stability')} kept by the stability "
                     "filter.")
    if s:
        def seed_rate(key: str) -> str:
            return format_rate({"n": s.get("n"), "rate": s.get(key), "ci95": s.get(f"{key}_ci95")})

        lines.append(f"Seed grasps, lift test (ungated): success {seed_rate('success_rate')}, six-direction "
                     f"{seed_rate('six_direction_success_rate')}.")
    header = _headline_header()
    for title, section in _sections(doc):
        if not any(src in section for src in SOURCES):
            continue
        lines += ["", f"## {title}", "", md_row(header), md_row(["---"] * len(header))]
        lines += [md_row(_headline_cells(source_label(src, doc), section[src])) for src in SOURCES if src in section]
        lines += ["", _gate_line(doc, section)]
    rounds = doc.get("rounds") or []
    if len(rounds) > 1:
        for title, head, rows in _round_tables(rounds):
            lines += ["", f"## {title}", "", md_row(head), md_row(["---"] * len(head))]
            lines += [md_row(r) for r in rows]
    return "\n".join(lines) + "\n"


_DETAILS = {
    "n_objects": "objects",
    "mean_lift_ratio": "mean lift ratio",
    "penetration_mm": "penetration (mm)",
    "self_penetration_mm": "self-penetration (mm)",
    "mean_contact_count": "contact count",
    "q1_positive_rate": "q1 &gt; 0",
    "mean_contact_distance_m": "contact distance (m)",
    "diversity_joint_entropy_nats": "joint entropy (nats, 100 bins)",
    "seconds_per_grasp": "s / grasp",
}


def _detail_cell(v: Any) -> str:
    if isinstance(v, Mapping) and "ci95" in v:
        return html.escape(format_rate(v))
    if isinstance(v, Mapping):
        return " / ".join(f"{html.escape(k)} {_fmt(x)}" for k, x in v.items())
    return _fmt(v)


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr><th>" + html.escape(r[0]) + "</th>" + "".join(f"<td>{html.escape(c)}</td>" for c in r[1:])
                   + "</tr>" for r in rows)  # fmt: skip
    return f"<table><tr>{th}</tr>{body}</table>"


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

    tables = ""
    for title, section in _sections(doc):
        if not any(src in section for src in SOURCES):
            continue
        rows = [_headline_cells(source_label(src, doc), section[src]) for src in SOURCES if src in section]
        detail_head = "".join(f"<th>{label}</th>" for label in _DETAILS.values())
        detail_rows = "".join(
            f"<tr><th>{html.escape(source_label(src, doc))}</th>"
            + "".join(f"<td>{_detail_cell(section[src].get(k))}</td>" for k in _DETAILS) + "</tr>"
            for src in SOURCES if src in section
        )  # fmt: skip
        tables += (f"<h2>{html.escape(title)}</h2>{_html_table(_headline_header(), rows)}"
                   f"<p>{html.escape(_gate_line(doc, section))}</p>"
                   f"<table><tr><th>grasps</th>{detail_head}</tr>{detail_rows}</table>")  # fmt: skip
    rounds = doc.get("rounds") or []
    if len(rounds) > 1:
        for title, head, rows in _round_tables(rounds):
            tables += f"<h2>{html.escape(title)}</h2>" + _html_table(head, rows)
    pics = "".join(
        f'<figure><img src="{html.escape(p.name)}" style="max-width:100%"><figcaption>{html.escape(c)}'
        "</figcaption></figure>"
        for c, p in (pictures or {}).items()
    )
    run = {k: v for k, v in doc.items()
           if k not in (*SOURCES, "train_objects", "test_objects", "per_object", "rounds")}
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>DexLite evaluation</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin-bottom:1em}}
td,th{{border:1px solid #999;padding:4px 8px;text-align:right}}</style></head><body>
<h1>DexLite evaluation</h1>
<p>Two MuJoCo protocols run on every grasp. <b>lift</b>: the write-up's test: the hand closes on the
object and lifts it 1 m; success when object rise / hand rise is in (0.9, 1.1] and the object is still
in the hand. Its six-direction test: from the closed grasp, a 1 g push along &plusmn;x, &plusmn;y,
&plusmn;z; success when the object moves &lt; 2 cm and turns &lt; 15&deg; in all six.
<b>dexgraspbench</b>: DexGraspBench's MuJoCo test: pregrasp &rarr; grasp &rarr; squeeze (friction 0.6,
finger kp 5), then a push of m&middot;10 m/s&sup2; along &plusmn;x, &plusmn;y, &plusmn;z for 2 s each;
success when the object stays within 5 cm and 15&deg; in all six; it fails at once if the pregrasp
penetrates the object by more than 1 cm. A grasp counts (<i>valid</i>) only if it passes the protocol
and its hand-object penetration and hand-hand self-penetration are both &le; the gate
({1000 * float(doc.get("max_penetration_m", validity.DEFAULT_MAX_PENETRATION)):g} mm, the learned-generator
benchmark's; 1 mm, DexGraspNet's dataset filter and BODex's, beside it); a simulation that went
unstable counts as a failure. Every rate: percentage [95% Wilson interval] (n). No CVAE (baseline):
DexGraspNet's initialisation followed by the same annealing steps as the post-optimisation, no
generator, on the same objects (the compute-matched baseline the CVAE must beat); raw: CVAE samples
(z ~ N(0, I)); expanded: encoded dataset grasps with a perturbed latent; postopt: raw samples after the
200-step post-optimisation.</p>
{tables}
<h2>Distributions ({html.escape(str(doc.get("evaluated_on", "")))})</h2>{_histograms(groups) if groups else ""}
<h2>Grasps</h2>{pics}
<h2>Run</h2><pre>{html.escape(json.dumps(run, indent=2, default=_json_default))}</pre></body></html>"""
    atomic_write_text(out_dir / "report.html", page)


def _png_base64(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    return base64.b64encode(buf.getvalue()).decode()


_HISTOGRAMS = (  # column, title, scale
    ("lift_ratio", "lift ratio", 1.0),
    ("penetration_depth", "penetration depth (mm)", 1000.0),
    ("q1", "q1 (Ferrari-Canny)", 1.0),
    ("E_dis", "E_dis", 1.0),
    ("energy", "energy", 1.0),
)


def _histograms(groups: Mapping[str, pd.DataFrame]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = [h for h in _HISTOGRAMS if any(_values(g, h[0]) is not None for g in groups.values())]
    if not cols:
        return ""
    fig, axes = plt.subplots(1, len(cols), figsize=(4 * len(cols), 3))
    for ax, (col, title, scale) in zip(np.atleast_1d(axes), cols, strict=True):
        for name, g in groups.items():
            v = _values(g, col)
            if v is not None:
                ax.hist(scale * v, bins=30, alpha=0.6, label=name)
        ax.set_title(title)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.tight_layout()
    data = _png_base64(fig)
    plt.close(fig)
    return f'<img src="data:image/png;base64,{data}">'


def _json_default(x: Any) -> Any:
    if isinstance(x, (np.floating, np.integer, np.bool_)):
        return x.item()
    return str(x)


def _fmt(v: Any) -> str:
    if v is None:
        return "&ndash;"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "&ndash;"
        return f"{v:.3f}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"
    return html.escape(str(v))
