"""The scaling result (issue 15): the same CVAE trained on the first 14, 100, 300 ... and all training
objects with one step budget, every model evaluated on the same validation and test objects.

Plain library code: the caller (``dexlite scaling``) runs the DAG once per size and hands over, per
model, its ``report.json`` document (:mod:`dexlite_core.report`) and its train stage's summary; this
module builds the table (:func:`build_table`), renders it as Markdown (:func:`render_markdown`) and as
a plot of success vs. training objects (:func:`render_plot`), and writes ``scaling.json``,
``scaling.md`` and ``scaling.png`` atomically (:func:`write_outputs`).

Figures are taken from the reports as they are, never recomputed: per model, object set
(``validation``: the report's headline when it was computed on the validation objects;
``test``: its ``test_objects``) and source (``baseline``, ``raw``, ``expanded``, ``postopt``, those
present): ``n``, ``n_objects``, the physically valid rates of both protocols (``lift``,
``dexgraspbench``) and the ungated lift rate (each ``{n, k, rate, ci95}``, a 95% Wilson interval),
``penetration_mm`` and the three diversity figures.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .atomic import atomic_path, atomic_write_json, atomic_write_text
from .report import SOURCES, source_label
from .splits import assign_splits, read_groups
from .stats import format_rate

SETS = ("validation", "test")
SET_TITLES = {"validation": "Validation objects", "test": "Test objects (final table only)"}
PROTOCOLS = ("lift", "dexgraspbench")
RATES = ("lift", "dexgraspbench", "lift_ungated")  # the rate entries copied from report.json
FIGURES = ("penetration_mm", "diversity_joint_entropy_bits", "diversity_joint_entropy_nats",
           "diversity_pca_cumvar5")  # fmt: skip
ALL = "all"
DEFAULT_SIZES = ("14", "100", "300", ALL)


@dataclass(frozen=True)
class Model:
    """One model of the curve: its size label (``"14"``, ``"all"``), the ``train.max_objects`` it was
    trained with (0 = all), how many training objects (groups) that is, its ``report.json`` document
    and its train stage's summary (``steps``, ``train_grasps``, ``objects``)."""

    label: str
    max_objects: int
    train_objects: int
    report: Mapping[str, Any]
    train: Mapping[str, Any] = field(default_factory=dict)
    report_path: str = ""


# ------------------------------------------------------------------------------------------ sizes


def parse_sizes(tokens: Iterable[str]) -> list[int]:
    """``["14", "100", "all"]`` (commas also split) -> ``[14, 100, 0]`` (0 = all training objects),
    duplicates dropped, order kept. ValueError naming the bad token."""
    out: list[int] = []
    for token in tokens:
        for part in str(token).split(","):
            part = part.strip()
            if not part:
                continue
            if part.lower() == ALL:
                n = 0
            else:
                try:
                    n = int(part)
                except ValueError:
                    n = -1
                if n < 0:
                    raise ValueError(f"--sizes: {part!r} is not a number of training objects or 'all'")
            if n not in out:
                out.append(n)
    if not out:
        raise ValueError("--sizes: no size given (e.g. --sizes 14 100 300 all)")
    return out


def resolve_sizes(sizes: Sequence[int], n_train: int) -> tuple[list[tuple[str, int]], str | None]:
    """The models to train, ``[(label, train.max_objects)]`` in ascending size, "all" last, and a note.

    `sizes`: :func:`parse_sizes`' numbers (0 = all); `n_train`: the number of training objects (groups)
    of the run. A size larger than `n_train` trains on every training object: it becomes ``"all"``
    (``max_objects`` 0, one model however many sizes collapse) and the note says so."""
    if n_train < 1:
        raise ValueError("the run has no training objects (see the train stage's split)")
    larger = sorted(n for n in sizes if n > n_train)
    keep = sorted({n for n in sizes if 0 < n <= n_train})
    models = [(str(n), n) for n in keep]
    if larger or 0 in sizes:
        models.append((ALL, 0))
    notes = []
    if larger:
        what = ", ".join(map(str, larger))
        notes.append(f"size{'s' if len(larger) > 1 else ''} {what} > the {n_train} training objects of this "
                     f"run: trained once on all of them (size '{ALL}')")
    if n_train in keep and (ALL, 0) in models:
        notes.append(f"size {n_train} = all {n_train} training objects: trained apart from size '{ALL}' "
                     "(same objects, its own train.max_objects)")
    return models, "; ".join(notes) or None


def training_groups(object_ids: Iterable[str], objects_root: Path, val_fraction: float,
                    test_fraction: float) -> list[str]:
    """The training split's groups (``train.max_objects`` counts groups) of the dataset's objects, as
    :func:`dexlite_core.train.fit` splits them (:mod:`dexlite_core.splits`; each object's group from
    its ``meta.json`` under `objects_root`)."""
    ids = sorted(set(object_ids))
    groups = read_groups(objects_root, ids)
    split = assign_splits(ids, groups, val_fraction, test_fraction)
    return sorted({groups[oid] for oid in split["train"]})


# ------------------------------------------------------------------------------------------ table


def _rate(entry: Any) -> dict[str, Any] | None:
    if not isinstance(entry, Mapping):
        return None
    return {k: entry.get(k) for k in ("n", "k", "rate", "ci95")}


def _section(report: Mapping[str, Any], which: str) -> Mapping[str, Any]:
    """The report's figures of one object set: validation = the headline (only when it was computed
    on the validation objects), test = ``test_objects``."""
    if which == "validation":
        return report if report.get("evaluated_on") == "validation objects" else {}
    return report.get("test_objects") or {}


def _row(model: Model, which: str, src: str, fig: Mapping[str, Any]) -> dict[str, Any]:
    rates = fig.get("rates") or {}
    return {
        "set": which,
        "model": model.label,
        "max_objects": model.max_objects,
        "train_objects": model.train_objects,
        "source": src,
        "n": fig.get("n"),
        "n_objects": fig.get("n_objects"),
        **{k: _rate(rates.get(k)) for k in RATES},
        **{k: fig.get(k) for k in FIGURES},
    }


def _order(models: Iterable[Model]) -> list[Model]:
    """Ascending training objects; "all" after a numeric size of the same count."""
    return sorted(models, key=lambda m: (m.train_objects, m.max_objects == 0, m.label))


def build_table(models: Sequence[Model], command: str = "", notes: Sequence[str] = ()) -> dict[str, Any]:
    """``scaling.json``'s document: ``models`` (label, max_objects, train_objects, train instances,
    grasps and steps, report path), ``rows`` (one per object set, model and source; sets in
    :data:`SETS` order, models by training objects, sources in :data:`SOURCES` order), the
    ``command`` that made it, ``notes`` (collapsed sizes; a warning when the models' validation or
    test objects differ), and the run facts shared by the reports (protocols, gate, baseline steps)."""
    if not models:
        raise ValueError("no models to tabulate")
    ordered = _order(models)
    notes = list(notes)
    for which, key in (("validation", "val"), ("test", "test")):
        seen = {json.dumps(sorted((m.report.get("train") or {}).get(key) or [])) for m in ordered}
        if len(seen) > 1:
            notes.append(f"warning: the models' {which} objects differ (report.json 'train'.{key}); "
                         "their rates are not comparable")
    for m in ordered:
        if m.report.get("evaluated_on") != "validation objects":
            notes.append(f"model {m.label}: report evaluated on {m.report.get('evaluated_on')!r}, "
                         "not on validation objects: no validation rows")
    rows = [_row(m, which, src, _section(m.report, which)[src])
            for which in SETS for m in ordered for src in SOURCES if src in _section(m.report, which)]
    first = ordered[-1].report
    return {
        "command": command,
        "notes": notes,
        "protocols": list(first.get("protocols") or PROTOCOLS),
        "max_penetration_m": first.get("max_penetration_m"),
        "baseline_steps": next((m.report.get("baseline_steps") for m in reversed(ordered)
                                if m.report.get("baseline_steps")), None),
        "models": [{
            "label": m.label,
            "max_objects": m.max_objects,
            "train_objects": m.train_objects,
            "train_instances": len((m.report.get("train") or {}).get("train") or []) or None,
            "train_grasps": m.train.get("train_grasps"),
            "steps": m.train.get("steps"),
            "epochs": m.train.get("epochs"),
            "val_objects": len((m.report.get("train") or {}).get("val") or []),
            "test_objects": len((m.report.get("train") or {}).get("test") or []),
            "report": m.report_path,
        } for m in ordered],
        "rows": rows,
    }  # fmt: skip


# ------------------------------------------------------------------------------------------ markdown


def source_name(src: str, table: Mapping[str, Any]) -> str:
    """The report's name of a source (the baseline spelled out with its steps)."""
    return source_label(src, table)


def size_name(label: str, train_objects: Any) -> str:
    return f"{ALL} ({train_objects})" if label == ALL else str(label)


def _num(x: Any, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.{digits}f}"


HEADER = ("training objects", "grasps", "n", "lift valid [95% CI]", "dexgraspbench valid [95% CI]",
          "lift ungated [95% CI]", "penetration median / p90 (mm)", "entropy (bits)",
          "PCA cum. var. (top 5)")  # fmt: skip


def row_cells(row: Mapping[str, Any], table: Mapping[str, Any]) -> list[str]:
    pen = row.get("penetration_mm") or {}
    return [size_name(row["model"], row["train_objects"]), source_name(row["source"], table), str(row.get("n")),
            *(format_rate(row.get(k)) for k in RATES),
            f"{_num(pen.get('median'))} / {_num(pen.get('p90'))}" if pen else "n/a",
            _num(row.get("diversity_joint_entropy_bits")), _num(row.get("diversity_pca_cumvar5"), 3)]  # fmt: skip


def render_markdown(table: Mapping[str, Any]) -> str:
    """``scaling.md``: the command, what the figures are, the models, one table per object set."""

    def md_row(cells: Sequence[Any]) -> str:
        return "| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |"

    gate = table.get("max_penetration_m")
    gate_mm = f"{1000 * gate:g} mm" if isinstance(gate, (int, float)) else "the configured gate"
    lines = ["# DexLite scaling: success vs. training objects", ""]
    if table.get("command"):
        lines += ["```bash", table["command"], "```", ""]
    lines += [f"One config and step budget for every model; each trained on the first N training objects "
              f"(`train.max_objects`, nested) and evaluated on the same validation and test objects. "
              f"valid = passes the protocol with penetration and self-penetration <= {gate_mm}; "
              f"ungated = the protocol's verdict alone. Rates: % [95% Wilson interval] (n)."]
    lines += [f"Note: {n}" for n in table.get("notes") or []]
    models = table.get("models") or []
    head = ["size", "training objects", "training instances", "training grasps", "steps", "report"]
    lines += ["", "## Models", "", md_row(head), md_row(["---"] * len(head))]
    lines += [md_row([m["label"], m["train_objects"], m.get("train_instances") or "n/a", m.get("train_grasps") or "n/a",
                      m.get("steps") if m.get("steps") is not None else "n/a", m.get("report") or ""])
              for m in models]  # fmt: skip
    rows = table.get("rows") or []
    for which in SETS:
        part = [r for r in rows if r["set"] == which]
        if not part:
            continue
        n_obj = max((r.get("n_objects") or 0) for r in part)
        lines += ["", f"## {SET_TITLES[which]} ({n_obj} object{'s' if n_obj != 1 else ''})", "",
                  md_row(HEADER), md_row(["---"] * len(HEADER))]
        lines += [md_row(row_cells(r, table)) for r in part]
    if not rows:
        lines += ["", "No validation or test figures in the reports."]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------ plot


def _point(entry: Any) -> tuple[float, float, float]:
    """(rate, lower error, upper error); NaN rate when missing."""
    if not entry or entry.get("rate") is None:
        return math.nan, 0.0, 0.0
    rate = float(entry["rate"])
    lo, hi = entry.get("ci95") or (None, None)
    return rate, rate - (rate if lo is None else float(lo)), (rate if hi is None else float(hi)) - rate


def render_plot(table: Mapping[str, Any], path: Path) -> Path:
    """``scaling.png``: per object set (rows) and protocol (columns), valid success vs. training
    objects (log x) with 95% intervals, one line per model source, the baseline (no model) as a
    horizontal band (its interval) around a dashed line (its rate). Written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = table.get("rows") or []
    sets = [s for s in SETS if any(r["set"] == s for r in rows)] or ["validation"]
    protocols = [p for p in PROTOCOLS if any((r.get(p) or {}).get("rate") is not None for r in rows)] or ["lift"]
    models = table.get("models") or []
    xs_all = sorted({max(1, int(m["train_objects"])) for m in models}) or [1]
    all_x = {max(1, int(m["train_objects"])) for m in models if m["label"] == ALL}
    fig, axes = plt.subplots(len(sets), len(protocols), figsize=(5.5 * len(protocols), 4.2 * len(sets)),
                             squeeze=False)
    colours = {"raw": "tab:blue", "expanded": "tab:orange", "postopt": "tab:green"}
    for i, which in enumerate(sets):
        part = [r for r in rows if r["set"] == which]
        for j, proto in enumerate(protocols):
            ax = axes[i][j]
            base = [r for r in part if r["source"] == "baseline" and (r.get(proto) or {}).get("rate") is not None]
            if base:  # computed once per object for every model: the largest model's report
                rate, el, eh = _point(base[-1][proto])
                ax.axhspan(rate - el, rate + eh, color="0.6", alpha=0.3, lw=0,
                           label=f"{source_name('baseline', table)} 95% CI")
                ax.axhline(rate, color="0.3", ls="--", lw=1.2, label=source_name("baseline", table))
            for k, src in enumerate(s for s in SOURCES if s != "baseline"):
                pts = [r for r in part if r["source"] == src]
                if not pts:
                    continue
                vals = [_point(r.get(proto)) for r in pts]
                dodge = 1.04 ** (k - 1)  # sources side by side around each size, not on top of each other
                ax.errorbar([max(1, int(r["train_objects"])) * dodge for r in pts], [v[0] for v in vals],
                            yerr=[[v[1] for v in vals], [v[2] for v in vals]], marker="o", capsize=3,
                            color=colours.get(src), label=src)
            ax.set_xscale("log")
            ax.set_xlim(xs_all[0] / 1.5, xs_all[-1] * 1.5)
            ax.set_xticks(xs_all)
            ax.set_xticklabels([f"{x}\n({ALL})" if x in all_x else str(x) for x in xs_all])
            ax.minorticks_off()
            ax.set_ylim(-0.02, 1.02)
            ax.set_xlabel("training objects")
            ax.set_ylabel(f"{proto} valid success")
            ax.set_title(f"{SET_TITLES[which].split(' (')[0]}: {proto}")
            ax.grid(alpha=0.3)
    legend: dict[str, Any] = {}
    for ax in axes.flat:  # one legend below the panels, so it covers no data
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    if legend:
        fig.legend(list(legend.values()), list(legend), loc="lower center", ncol=min(3, len(legend)), fontsize=8)
    legend_in = 0.15 + 0.2 * math.ceil(len(legend) / 3)  # its height, inches
    fig.tight_layout(rect=(0.0, legend_in / fig.get_figheight(), 1.0, 1.0))
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
    finally:
        plt.close(fig)
    return path


def write_outputs(out_dir: Path, table: Mapping[str, Any]) -> dict[str, Path]:
    """Write ``scaling.json``, ``scaling.md`` and ``scaling.png`` into `out_dir` (each atomically)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "scaling.json", "md": out_dir / "scaling.md", "png": out_dir / "scaling.png"}
    atomic_write_json(paths["json"], table)
    atomic_write_text(paths["md"], render_markdown(table))
    render_plot(table, paths["png"])
    return paths
