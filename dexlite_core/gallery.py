"""A self-contained interactive HTML gallery of grasps: one card per grasp, each a 3D view of the hand
at pose q on its object (drag to rotate, wheel to zoom, double-click to reset), a held / dropped badge
and the grasp's metrics.

The page is ONE file that needs no network when viewed: inline CSS and JS, a small software renderer
on the 2D canvas API (painter's algorithm, flat Lambert shading: no WebGL, so it draws in headless
Chromium without a GPU) and the meshes embedded as base64. The hand's visual meshes are decimated
once (vertex clustering, ``hand_faces`` in all) and shared by every card, which carries only its
links' rigid transforms (21 x 3 x 4 float32); each distinct object mesh is decimated to
``object_faces`` and embedded once. A 32-card page of distinct objects is about 1 MB.

Public API::

    GraspCard(object_mesh, q, object_id, rank=None, valid=None, verdicts={}, metrics={}, label=None)
    write_gallery(cards, out_path, title=...) -> Path        # cards: GraspCard or dicts of its fields
    gallery_from_table(table, objects_root, out_path, title=..., limit=None) -> Path

Page hooks (for tests and scripts): each card is ``<article class="grasp-card" data-status="held|
dropped|unscored">``; once its canvas has drawn it gets ``data-rendered="1"``, ``data-triangles``
(triangles drawn), ``data-view`` (yaw, tilt in degrees and zoom) and ``data-sig`` (a checksum of the
projected vertices). A URL hash ``#rotate=30&tilt=10&zoom=2`` turns every view (the same code path
as a drag / the wheel); ``window.dexliteGallery`` exposes ``rotate(i, yawDeg, tiltDeg)``,
``zoom(i, factor)``, ``reset(i)``. A JS error sets ``data-error`` on ``<body>``.
Plain Python + numpy/trimesh (no storage / flows / Prefect).
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import html
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import trimesh

from .atomic import atomic_write_text

DEFAULT_TITLE = "DexLite grasps"
HAND_FACES = 8000  # the whole hand, shared by every card
OBJECT_FACES = 2500  # per distinct object
OBJECT_FILE = "mesh.obj"  # docs/CONTRACTS.md "Object folder"
STATUS = {True: "held", False: "dropped", None: "unscored"}

# metric key -> label on the card (other keys are shown as they are)
METRIC_LABELS = {
    "lift_ratio": "lift ratio",
    "penetration_depth_mm": "penetration (mm)",
    "self_penetration_mm": "self-penetration (mm)",
    "q1": "Q1",
    "contact_count": "contacts",
    "energy": "energy",
}
# table column -> verdict label (a protocol's ungated verdict; `valid` adds the penetration gate)
VERDICT_COLUMNS = {"lift_success": "lift", "dgb_success": "DexGraspBench", "six_dir_success": "six-direction"}


@dataclasses.dataclass
class GraspCard:
    """One grasp of the gallery.

    object_mesh: the object in the grasp's frame (the frame q is given in). q: (28,) pose.
    valid: held (True), dropped (False) or not scored (None). verdicts: per-protocol verdicts
    (label -> True / False / None). metrics: label -> value, shown under the view in this order.
    label: the card's title (default ``"<object_id> #<rank>"``).
    """

    object_mesh: trimesh.Trimesh
    q: np.ndarray
    object_id: str
    rank: int | None = None
    valid: bool | None = None
    verdicts: Mapping[str, bool | None] = dataclasses.field(default_factory=dict)
    metrics: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    label: str | None = None


# ---------------------------------------------------------------------------------------- meshes


def _cluster(v: np.ndarray, f: np.ndarray, cell: float) -> tuple[np.ndarray, np.ndarray]:
    """Vertex clustering on a grid of `cell` metres: vertices of a cell merge to their mean; faces
    that collapse or repeat are dropped, the rest keep their winding."""
    key = np.floor((v - v.min(0)) / cell).astype(np.int64)
    _, inv, counts = np.unique(key, axis=0, return_inverse=True, return_counts=True)
    inv = inv.reshape(-1)
    merged = np.stack([np.bincount(inv, weights=v[:, k], minlength=counts.size) for k in range(3)], 1)
    merged /= counts[:, None]
    nf = inv[f]
    nf = nf[(nf[:, 0] != nf[:, 1]) & (nf[:, 1] != nf[:, 2]) & (nf[:, 0] != nf[:, 2])]
    if len(nf):
        _, first = np.unique(np.sort(nf, axis=1), axis=0, return_index=True)
        nf = nf[np.sort(first)]
    used = np.unique(nf)
    remap = np.full(counts.size, -1, dtype=np.int64)
    remap[used] = np.arange(used.size)
    return merged[used], remap[nf]


def _search_cell(count, lo: float, hi: float, max_faces: int, steps: int = 22) -> float | None:
    """The smallest cell in [lo, hi] (log bisection) whose face count `count(cell)` is <= max_faces;
    None when even `hi` gives more."""
    if count(hi) > max_faces:
        return None
    for _ in range(steps):
        mid = math.sqrt(lo * hi)
        if count(mid) > max_faces:
            lo = mid
        else:
            hi = mid
    return hi


def decimate(vertices: np.ndarray, faces: np.ndarray, max_faces: int) -> tuple[np.ndarray, np.ndarray]:
    """`(V, 3), (F, 3)` -> a mesh of at most `max_faces` faces by vertex clustering (the finest grid
    that fits); returned unchanged when it already fits."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    if len(f) <= max_faces or len(v) == 0:
        return v, f
    diag = float(np.linalg.norm(v.max(0) - v.min(0))) or 1.0
    cell = _search_cell(lambda c: len(_cluster(v, f, c)[1]), diag * 1e-5, diag, max_faces)
    if cell is None:
        return v[:0], f[:0]
    return _cluster(v, f, cell)


@functools.lru_cache(maxsize=1)
def hand_model():
    """The shared :class:`~dexlite_core.hand.model.HandModel` (built once per process)."""
    from .hand.model import HandModel

    return HandModel()


@functools.lru_cache(maxsize=4)
def _hand_reference(max_faces: int) -> tuple[list[np.ndarray], list[tuple[np.ndarray, np.ndarray]]]:
    """The hand's visual meshes at q = 0 (palm frame): the full vertices of each link (to fit each
    card's transforms) and the decimated links (one cell size for the whole hand; a link that would
    fall under 40 faces is decimated on its own to at most 40)."""
    links = hand_model().visual_meshes(np.zeros(28))
    full = [np.asarray(m.vertices, dtype=np.float64) for m in links]
    faces = [np.asarray(m.faces, dtype=np.int64) for m in links]
    total = sum(len(f) for f in faces)
    if total <= max_faces:
        return full, list(zip(full, faces, strict=True))
    span = max(float(np.linalg.norm(v.max(0) - v.min(0))) for v in full)
    cell = _search_cell(lambda c: sum(len(_cluster(v, f, c)[1]) for v, f in zip(full, faces, strict=True)),
                        span * 1e-5, span, max_faces)
    out = []
    for v, f in zip(full, faces, strict=True):
        dv, df = _cluster(v, f, cell) if cell is not None else (v[:0], f[:0])
        if len(df) < min(len(f), 40):
            dv, df = decimate(v, f, min(len(f), 40))
        out.append((dv, df))
    return full, out


def _rigid_fit(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """`(3, 4)` [R | t] with ``b = a @ R.T + t`` (Kabsch); raises if the points are not rigidly moved."""
    ca, cb = a.mean(0), b.mean(0)
    u, _, vt = np.linalg.svd((a - ca).T @ (b - cb))
    d = np.sign(np.linalg.det(vt.T @ u.T)) or 1.0
    rot = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    t = cb - rot @ ca
    err = float(np.abs(a @ rot.T + t - b).max())
    if err > 1e-5:
        raise RuntimeError(f"hand link moved non-rigidly between poses ({err:.2e} m)")
    return np.concatenate([rot, t[:, None]], 1)


def _link_transforms(q: np.ndarray, reference: list[np.ndarray]) -> np.ndarray:
    """`(L, 3, 4)` transforms of the hand's links from q = 0 to pose `q (28,)`."""
    moved = hand_model().visual_meshes(q)
    if len(moved) != len(reference):
        raise RuntimeError(f"hand has {len(moved)} visual meshes, expected {len(reference)}")
    return np.stack([_rigid_fit(r, np.asarray(m.vertices, dtype=np.float64))
                     for r, m in zip(reference, moved, strict=True)])


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode("ascii")


def _encode_mesh(v: np.ndarray, f: np.ndarray) -> dict:
    """Vertices as uint16 on the mesh's bounding box (lo + q * step), faces as uint16 (uint32 past
    65535 vertices), little-endian base64."""
    v = np.asarray(v, dtype=np.float64).reshape(-1, 3)
    lo = v.min(0) if len(v) else np.zeros(3)
    step = ((v.max(0) - lo) / 65535.0) if len(v) else np.zeros(3)
    qv = np.rint((v - lo) / np.where(step > 0, step, 1.0)).clip(0, 65535).astype("<u2")
    wide = len(v) > 65535
    return {
        "v": _b64(qv),
        "lo": [float(x) for x in lo],
        "step": [float(x) for x in step],
        "f": _b64(np.asarray(f).astype("<u4" if wide else "<u2")),
        "wide": wide,
    }


def _pose(q: Any) -> np.ndarray:
    q = np.asarray(q, dtype=np.float64).reshape(-1)
    if q.shape != (28,) or not np.isfinite(q).all():
        raise ValueError(f"a pose is 28 finite numbers, got shape {q.shape} with values {q[:6]}...")
    return q


def _as_mesh(mesh: Any, where: str) -> trimesh.Trimesh:
    if isinstance(mesh, trimesh.Scene):
        mesh = mesh.to_geometry() if hasattr(mesh, "to_geometry") else mesh.dump(concatenate=True)
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise ValueError(f"{where}: object_mesh must be a non-empty trimesh.Trimesh, got {type(mesh).__name__}")
    return mesh


# ------------------------------------------------------------------------------------------ page


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        x = float(value)
        if not math.isfinite(x):
            return "–"
        return f"{x:.4g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.2e}"
    return str(value)


def _verdict(value: Any) -> bool | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return bool(value)


def _card_html(i: int, card: GraspCard) -> str:
    status = STATUS[_verdict(card.valid)]
    label = card.label or (card.object_id if card.rank is None else f"{card.object_id} #{card.rank}")
    chips = []
    for name, v in card.verdicts.items():
        verdict = _verdict(v)
        cls, mark = {True: ("pass", "✓"), False: ("fail", "✗"), None: ("none", "–")}[verdict]
        chips.append(f'<span class="chip {cls}">{html.escape(str(name))} {mark}</span>')
    rows = "".join(
        f"<tr><th>{html.escape(METRIC_LABELS.get(str(k), str(k)))}</th><td>{html.escape(_fmt(v))}</td></tr>"
        for k, v in card.metrics.items()
    )
    e = html.escape
    return (
        f'<article class="grasp-card {status}" data-index="{i}" data-status="{status}" '
        f'data-object-id="{e(card.object_id)}" data-rank="{"" if card.rank is None else int(card.rank)}" '
        f'data-rendered="0">\n'
        f'<header><span class="title" title="{e(label)}">{e(label)}</span>'
        f'<span class="badge {status}">{status.upper()}</span></header>\n'
        f'<canvas class="view" width="320" height="300" aria-label="3D view of {e(label)}"></canvas>\n'
        f'<div class="verdicts">{"".join(chips)}</div>\n'
        f'<table class="metrics">{rows}</table>\n</article>'
    )


_CSS = """
:root{--held:#1e8e3e;--dropped:#c5221f;--unscored:#80868b;--bg:#f4f5f7}
*{box-sizing:border-box}
body{margin:0;padding:16px;font:13px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;
  background:var(--bg);color:#202124}
h1{font-size:18px;margin:0 0 4px}
.summary{color:#5f6368;margin-bottom:8px}
.bar{display:flex;flex-wrap:wrap;gap:12px;align-items:center;margin-bottom:12px}
.bar button{font:inherit;padding:2px 10px;border:1px solid #dadce0;border-radius:12px;background:#fff;cursor:pointer}
.bar button.on{background:#202124;color:#fff}
.legend i{display:inline-block;width:10px;height:10px;border-radius:2px;margin:0 4px 0 8px;vertical-align:-1px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:12px}
.grasp-card{background:#fff;border:3px solid var(--unscored);border-radius:8px;padding:8px;min-width:0}
.grasp-card.held{border-color:var(--held)}
.grasp-card.dropped{border-color:var(--dropped)}
.grasp-card.hidden{display:none}
.grasp-card header{display:flex;justify-content:space-between;align-items:center;gap:8px;margin-bottom:6px}
.grasp-card .title{font-weight:600;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.badge{color:#fff;font-weight:700;font-size:11px;padding:2px 8px;border-radius:10px;background:var(--unscored)}
.badge.held{background:var(--held)}
.badge.dropped{background:var(--dropped)}
canvas.view{display:block;width:100%;aspect-ratio:16/15;background:#fbfbfc;border-radius:4px;
  cursor:grab;touch-action:none}
canvas.view:active{cursor:grabbing}
.verdicts{margin:6px 0 2px}
.chip{display:inline-block;font-size:11px;padding:1px 7px;margin:0 4px 2px 0;border-radius:9px;border:1px solid}
.chip.pass{color:var(--held);border-color:var(--held)}
.chip.fail{color:var(--dropped);border-color:var(--dropped)}
.chip.none{color:var(--unscored);border-color:var(--unscored)}
table.metrics{width:100%;border-collapse:collapse;font-variant-numeric:tabular-nums}
table.metrics th{text-align:left;font-weight:400;color:#5f6368;padding:1px 0}
table.metrics td{text-align:right;padding:1px 0}
"""

_JS = r"""
(function () {
"use strict";
window.addEventListener("error", function (e) {
  document.body.setAttribute("data-error", String(e.message || e));
});
var DATA = JSON.parse(document.getElementById("dexlite-gallery-data").textContent);
var COLORS = [[74, 128, 196, 0.62], [222, 164, 122, 1.0]];  // object, hand (r, g, b, alpha)
var BG = "#fbfbfc", LEVELS = 48;
var LIGHT = (function () { var l = [0.35, 0.55, 1.0], n = Math.hypot(l[0], l[1], l[2]);
  return [l[0] / n, l[1] / n, l[2] / n]; })();
var STYLE = COLORS.map(function (c) {
  var out = [];
  for (var k = 0; k <= LEVELS; k++) {
    var s = 0.3 + 0.7 * k / LEVELS;
    out.push("rgba(" + Math.round(c[0] * s) + "," + Math.round(c[1] * s) + "," + Math.round(c[2] * s) + ","
             + c[3] + ")");
  }
  return out;
});

function bytes(s) {
  var bin = atob(s), u = new Uint8Array(bin.length);
  for (var i = 0; i < bin.length; i++) u[i] = bin.charCodeAt(i);
  return u.buffer;
}
function decode(m) {
  var q = new Uint16Array(bytes(m.v)), v = new Float32Array(q.length);
  for (var i = 0; i < q.length; i += 3)
    for (var k = 0; k < 3; k++) v[i + k] = m.lo[k] + q[i + k] * m.step[k];
  return {v: v, f: m.wide ? new Uint32Array(bytes(m.f)) : new Uint16Array(bytes(m.f))};
}
var HAND = DATA.hand.map(decode), OBJECTS = {};
function object(key) {
  if (!OBJECTS[key]) OBJECTS[key] = decode(DATA.objects[key]);
  return OBJECTS[key];
}

// one card's triangles in the object frame: positions P, faces F, material M, unit normals N
function scene(card) {
  var T = new Float32Array(bytes(card.T)), obj = object(card.obj);
  var nv = obj.v.length / 3, nf = obj.f.length / 3;
  HAND.forEach(function (h) { nv += h.v.length / 3; nf += h.f.length / 3; });
  var P = new Float32Array(3 * nv), F = new Uint32Array(3 * nf), M = new Uint8Array(nf);
  P.set(obj.v); F.set(obj.f);
  var vo = obj.v.length / 3, fo = obj.f.length / 3;
  HAND.forEach(function (h, l) {
    var t = T.subarray(12 * l, 12 * l + 12), v = h.v;
    for (var i = 0; i < v.length; i += 3) {
      var x = v[i], y = v[i + 1], z = v[i + 2], o = 3 * vo + i;
      P[o] = t[0] * x + t[1] * y + t[2] * z + t[3];
      P[o + 1] = t[4] * x + t[5] * y + t[6] * z + t[7];
      P[o + 2] = t[8] * x + t[9] * y + t[10] * z + t[11];
    }
    for (var j = 0; j < h.f.length; j++) F[3 * fo + j] = h.f[j] + vo;
    M.fill(1, fo, fo + h.f.length / 3);
    vo += v.length / 3; fo += h.f.length / 3;
  });
  var N = new Float32Array(3 * nf);
  for (var f = 0; f < nf; f++) {
    var a = 3 * F[3 * f], b = 3 * F[3 * f + 1], c = 3 * F[3 * f + 2];
    var ux = P[b] - P[a], uy = P[b + 1] - P[a + 1], uz = P[b + 2] - P[a + 2];
    var wx = P[c] - P[a], wy = P[c + 1] - P[a + 1], wz = P[c + 2] - P[a + 2];
    var nx = uy * wz - uz * wy, ny = uz * wx - ux * wz, nz = ux * wy - uy * wx;
    var n = Math.hypot(nx, ny, nz) || 1;
    N[3 * f] = nx / n; N[3 * f + 1] = ny / n; N[3 * f + 2] = nz / n;
  }
  var lo = [Infinity, Infinity, Infinity], hi = [-Infinity, -Infinity, -Infinity];
  for (var p = 0; p < P.length; p += 3)
    for (var k = 0; k < 3; k++) { lo[k] = Math.min(lo[k], P[p + k]); hi[k] = Math.max(hi[k], P[p + k]); }
  var C = [(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, (lo[2] + hi[2]) / 2], r = 1e-9;
  for (var q = 0; q < P.length; q += 3)
    r = Math.max(r, Math.hypot(P[q] - C[0], P[q + 1] - C[1], P[q + 2] - C[2]));
  return {P: P, F: F, M: M, N: N, C: C, r: r};
}

// view rotation (rows: screen x right, y up, z towards the viewer), world z up at the start
function initial() {
  var a = -60 * Math.PI / 180, e = 20 * Math.PI / 180;
  return [[-Math.sin(a), Math.cos(a), 0],
          [-Math.sin(e) * Math.cos(a), -Math.sin(e) * Math.sin(a), Math.cos(e)],
          [Math.cos(e) * Math.cos(a), Math.cos(e) * Math.sin(a), Math.sin(e)]];
}
function mul(A, B) {
  var C = [[0, 0, 0], [0, 0, 0], [0, 0, 0]];
  for (var i = 0; i < 3; i++) for (var j = 0; j < 3; j++)
    C[i][j] = A[i][0] * B[0][j] + A[i][1] * B[1][j] + A[i][2] * B[2][j];
  return C;
}
function turn(st, yaw, tilt) {  // radians: yaw about the screen's vertical, tilt about its horizontal
  var cy = Math.cos(yaw), sy = Math.sin(yaw), ct = Math.cos(tilt), stt = Math.sin(tilt);
  st.R = mul([[1, 0, 0], [0, ct, -stt], [0, stt, ct]], mul([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]], st.R));
  st.yaw += yaw; st.tilt += tilt;
}

function draw(st) {
  if (!st.S) st.S = scene(DATA.cards[st.i]);
  var S = st.S, cv = st.canvas, W = cv.width, H = cv.height, ctx = st.ctx, R = st.R, t0 = performance.now();
  var nv = S.P.length / 3, nf = S.F.length / 3;
  var X = st.X || (st.X = new Float32Array(nv)), Y = st.Y || (st.Y = new Float32Array(nv));
  var Z = st.Z || (st.Z = new Float32Array(nv)), D = st.D || (st.D = new Float32Array(nf));
  var order = st.order || (st.order = new Uint32Array(nf));
  var s = st.zoom * 0.46 * Math.min(W, H) / S.r, sig = 0;
  for (var v = 0; v < nv; v++) {
    var x = S.P[3 * v] - S.C[0], y = S.P[3 * v + 1] - S.C[1], z = S.P[3 * v + 2] - S.C[2];
    X[v] = W / 2 + s * (R[0][0] * x + R[0][1] * y + R[0][2] * z);
    Y[v] = H / 2 - s * (R[1][0] * x + R[1][1] * y + R[1][2] * z);
    Z[v] = R[2][0] * x + R[2][1] * y + R[2][2] * z;
    sig = (sig + Math.round(X[v]) * (v % 7 + 1) + Math.round(Y[v]) * (v % 11 + 3)) % 1000000007;
  }
  for (var f = 0; f < nf; f++) {
    order[f] = f;
    D[f] = Z[S.F[3 * f]] + Z[S.F[3 * f + 1]] + Z[S.F[3 * f + 2]];
  }
  order.sort(function (a, b) { return D[a] - D[b]; });  // far first (painter's algorithm)
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.fillStyle = BG; ctx.fillRect(0, 0, W, H);
  ctx.lineJoin = "round"; ctx.lineWidth = 0.7;
  var drawn = 0;
  for (var k = 0; k < nf; k++) {
    var g = order[k], a = S.F[3 * g], b = S.F[3 * g + 1], c = S.F[3 * g + 2];
    var area = (X[b] - X[a]) * (Y[c] - Y[a]) - (X[c] - X[a]) * (Y[b] - Y[a]);
    if (area === 0 || area !== area) continue;
    var nx = S.N[3 * g], ny = S.N[3 * g + 1], nz = S.N[3 * g + 2];
    var lx = R[0][0] * nx + R[0][1] * ny + R[0][2] * nz, ly = R[1][0] * nx + R[1][1] * ny + R[1][2] * nz;
    var lz = R[2][0] * nx + R[2][1] * ny + R[2][2] * nz;
    var lam = Math.abs(lx * LIGHT[0] + ly * LIGHT[1] + lz * LIGHT[2]);  // two-sided Lambert
    var m = S.M[g], style = STYLE[m][Math.round(lam * LEVELS)];
    ctx.beginPath(); ctx.moveTo(X[a], Y[a]); ctx.lineTo(X[b], Y[b]); ctx.lineTo(X[c], Y[c]); ctx.closePath();
    ctx.fillStyle = style; ctx.fill();
    if (m === 1) { ctx.strokeStyle = style; ctx.stroke(); }  // hides the seams of the opaque hand
    drawn++;
  }
  var el = st.card;
  el.setAttribute("data-triangles", String(drawn));
  el.setAttribute("data-view", (st.yaw * 180 / Math.PI).toFixed(1) + "," + (st.tilt * 180 / Math.PI).toFixed(1)
                  + "," + st.zoom.toFixed(3));
  el.setAttribute("data-sig", String(sig));
  el.setAttribute("data-ms", (performance.now() - t0).toFixed(1));
  el.setAttribute("data-rendered", "1");
}

var states = [];
function schedule(st) {
  if (st.pending) return;
  st.pending = true;
  (window.requestAnimationFrame || setTimeout)(function () { st.pending = false; draw(st); });
}
function reset(st) { st.R = initial(); st.yaw = 0; st.tilt = 0; st.zoom = 1; }
function fromHash(st) {
  reset(st);
  var h = {};
  location.hash.replace(/^#/, "").split("&").forEach(function (kv) {
    var p = kv.split("="); if (p.length === 2) h[p[0]] = parseFloat(p[1]);
  });
  if (isFinite(h.rotate) || isFinite(h.tilt))
    turn(st, (h.rotate || 0) * Math.PI / 180, (h.tilt || 0) * Math.PI / 180);
  if (isFinite(h.zoom) && h.zoom > 0) st.zoom = h.zoom;
}

Array.prototype.forEach.call(document.querySelectorAll(".grasp-card"), function (el) {
  var cv = el.querySelector("canvas.view"), dpr = Math.min(window.devicePixelRatio || 1, 2);
  var w = cv.clientWidth || 320, h = cv.clientHeight || 300;
  cv.width = Math.round(w * dpr); cv.height = Math.round(h * dpr);
  var st = {i: parseInt(el.getAttribute("data-index"), 10), card: el, canvas: cv, ctx: cv.getContext("2d")};
  fromHash(st);
  states.push(st);
  var drag = null;
  cv.addEventListener("pointerdown", function (e) {
    drag = [e.clientX, e.clientY]; cv.setPointerCapture(e.pointerId);
  });
  cv.addEventListener("pointermove", function (e) {
    if (!drag) return;
    turn(st, (e.clientX - drag[0]) * 0.01, (e.clientY - drag[1]) * 0.01);
    drag = [e.clientX, e.clientY]; schedule(st);
  });
  cv.addEventListener("pointerup", function () { drag = null; });
  cv.addEventListener("pointercancel", function () { drag = null; });
  cv.addEventListener("wheel", function (e) {
    e.preventDefault();
    st.zoom = Math.min(20, Math.max(0.2, st.zoom * Math.exp(-e.deltaY * 0.0015))); schedule(st);
  }, {passive: false});
  cv.addEventListener("dblclick", function () { reset(st); schedule(st); });
});

// first paint: one card per task, so a long page stays responsive while it fills in
(function next(k) {
  if (k >= states.length) { document.body.setAttribute("data-rendered", "1"); return; }
  draw(states[k]);
  setTimeout(function () { next(k + 1); }, 0);
})(0);

window.addEventListener("hashchange", function () {
  states.forEach(function (st) { fromHash(st); draw(st); });
});

Array.prototype.forEach.call(document.querySelectorAll(".bar button[data-show]"), function (b, _, all) {
  b.addEventListener("click", function () {
    var show = b.getAttribute("data-show");
    Array.prototype.forEach.call(all, function (o) { o.classList.toggle("on", o === b); });
    states.forEach(function (st) {
      st.card.classList.toggle("hidden", show !== "all" && st.card.getAttribute("data-status") !== show);
    });
  });
});

window.dexliteGallery = {
  cards: states,
  rotate: function (i, yawDeg, tiltDeg) {
    turn(states[i], yawDeg * Math.PI / 180, (tiltDeg || 0) * Math.PI / 180); draw(states[i]);
  },
  zoom: function (i, factor) { states[i].zoom *= factor; draw(states[i]); },
  reset: function (i) { reset(states[i]); draw(states[i]); }
};
})();
"""


def _coerce(card: GraspCard | Mapping[str, Any], i: int) -> GraspCard:
    if isinstance(card, GraspCard):
        return card
    if isinstance(card, Mapping):
        try:
            return GraspCard(**card)
        except TypeError as exc:
            raise ValueError(f"card {i}: {exc}") from exc
    raise ValueError(f"card {i}: expected a GraspCard or a dict of its fields, got {type(card).__name__}")


def build_page(
    cards: Iterable[GraspCard | Mapping[str, Any]],
    title: str = DEFAULT_TITLE,
    *,
    hand_faces: int = HAND_FACES,
    object_faces: int = OBJECT_FACES,
) -> str:
    """The gallery page's HTML text (see :func:`write_gallery`)."""
    cards = [_coerce(c, i) for i, c in enumerate(cards)]
    reference, links = _hand_reference(int(hand_faces))
    objects: dict[str, dict] = {}
    payload = []
    for i, card in enumerate(cards):
        where = f"card {i} ({card.object_id})"
        try:
            q = _pose(card.q)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from exc
        mesh = _as_mesh(card.object_mesh, where)
        v = np.asarray(mesh.vertices, dtype=np.float64)
        f = np.asarray(mesh.faces, dtype=np.int64)
        key = hashlib.sha1(v.tobytes() + f.tobytes()).hexdigest()[:12]
        if key not in objects:
            objects[key] = _encode_mesh(*decimate(v, f, int(object_faces)))
        payload.append({"obj": key, "T": _b64(_link_transforms(q, reference).astype("<f4"))})
    data = {"hand": [_encode_mesh(v, f) for v, f in links], "objects": objects, "cards": payload}
    blob = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    counts = {s: sum(STATUS[_verdict(c.valid)] == s for c in cards) for s in STATUS.values()}
    summary = f"{len(cards)} grasp(s): {counts['held']} held, {counts['dropped']} dropped"
    if counts["unscored"]:
        summary += f", {counts['unscored']} unscored"
    buttons = "".join(
        f'<button type="button" data-show="{s}"{on}>{s}</button>'
        for s, on in (("all", ' class="on"'), ("held", ""), ("dropped", ""), ("unscored", ""))
    )
    body = "\n".join(_card_html(i, c) for i, c in enumerate(cards))
    t = html.escape(title)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{t}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<h1>{t}</h1>\n<div class=\"summary\">{html.escape(summary)}</div>\n"
        f"<div class=\"bar\"><span>{buttons}</span><span class=\"legend\"><i style=\"background:#dea47a\"></i>hand"
        "<i style=\"background:#4a80c4\"></i>object</span>"
        "<span>drag: rotate &middot; wheel: zoom &middot; double-click: reset</span></div>\n"
        "<noscript><p>The 3D views need JavaScript.</p></noscript>\n"
        f"<main class=\"grid\">\n{body}\n</main>\n"
        f"<script type=\"application/json\" id=\"dexlite-gallery-data\">{blob}</script>\n"
        f"<script>{_JS}</script>\n</body>\n</html>\n"
    )


def write_gallery(
    cards: Sequence[GraspCard | Mapping[str, Any]],
    out_path: str | Path,
    title: str = DEFAULT_TITLE,
    *,
    hand_faces: int = HAND_FACES,
    object_faces: int = OBJECT_FACES,
) -> Path:
    """Write the gallery of `cards` (in the given order) to `out_path` atomically; returns the path.
    A card is a :class:`GraspCard` or a dict of its fields. Raises ValueError naming the card for a
    bad pose or mesh."""
    page = build_page(cards, title, hand_faces=hand_faces, object_faces=object_faces)
    return atomic_write_text(out_path, page)


# ----------------------------------------------------------------------------------------- table


def _column_frame(table: Any):
    import pandas as pd

    if isinstance(table, pd.DataFrame):
        return table.reset_index(drop=True)
    if hasattr(table, "to_pandas"):  # pyarrow Table
        return table.to_pandas().reset_index(drop=True)
    raise ValueError(f"table must be a pandas DataFrame or a pyarrow Table, got {type(table).__name__}")


def _cell(df, col: str, i: int) -> Any:
    if col not in df:
        return None
    import pandas as pd

    v = df[col].iloc[i]
    if v is None or (np.ndim(v) == 0 and pd.isna(v)):
        return None
    return v.item() if isinstance(v, np.generic) else v


def load_object_mesh(object_dir: str | Path) -> trimesh.Trimesh:
    """The normalised mesh (``mesh.obj``) of an object folder; FileNotFoundError / ValueError naming it."""
    path = Path(object_dir) / OBJECT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: object mesh not found")
    try:
        mesh = trimesh.load(str(path), file_type="obj", process=False, force="mesh")
    except Exception as exc:  # noqa: BLE001 - any parser failure is a bad file
        raise ValueError(f"{path}: unreadable mesh ({exc})") from exc
    return _as_mesh(mesh, str(path))


def cards_from_table(table: Any, objects_root: str | Path, limit: int | None = None) -> list[GraspCard]:
    """One :class:`GraspCard` per row of a grasp table (columns `object_id`, `q` and, where present,
    `valid`, `lift_success`, `dgb_success`, `six_dir_success`, `lift_ratio`, `penetration_depth`,
    `self_penetration` [m, shown in mm], `q1`, `contact_count`, `energy`, `rank`), in table order.
    Without `valid`, held = :func:`dexlite_core.validity.valid_success` of the lift protocol (else
    DexGraspBench's) at its default 5 mm gate, unscored when neither was run. `rank` defaults to the
    row's 1-based position among its object's rows."""
    df = _column_frame(table)
    for col in ("object_id", "q"):
        if col not in df:
            raise ValueError(f"grasp table has no {col!r} column (columns: {list(df.columns)})")
    if limit is not None:
        df = df.iloc[: int(limit)].reset_index(drop=True)
    if "valid" in df:
        valid = [_cell(df, "valid", i) for i in range(len(df))]
    else:
        from .validity import valid_success

        protocol = next((p for p, c in (("lift", "lift_success"), ("dexgraspbench", "dgb_success")) if c in df), None)
        valid = list(valid_success(df, protocol)) if protocol else [None] * len(df)
    root = Path(objects_root)
    meshes: dict[str, trimesh.Trimesh] = {}
    seen: dict[str, int] = {}
    cards = []
    for i in range(len(df)):
        oid = str(df["object_id"].iloc[i])
        if oid not in meshes:
            meshes[oid] = load_object_mesh(root / oid)
        seen[oid] = seen.get(oid, 0) + 1
        rank = _cell(df, "rank", i)
        metrics: dict[str, Any] = {}
        for col in ("lift_ratio", "q1", "contact_count", "energy"):
            if col in df:
                metrics[col] = _cell(df, col, i)
        for col in ("penetration_depth", "self_penetration"):
            if col in df:
                v = _cell(df, col, i)
                metrics[f"{col}_mm"] = None if v is None else float(v) * 1000.0
        cards.append(GraspCard(
            object_mesh=meshes[oid],
            q=np.asarray(df["q"].iloc[i], dtype=np.float64),
            object_id=oid,
            rank=int(rank) if rank is not None else seen[oid],
            valid=_verdict(valid[i]),
            verdicts={label: _verdict(_cell(df, col, i)) for col, label in VERDICT_COLUMNS.items() if col in df},
            metrics=metrics,
        ))
    return cards


def gallery_from_table(
    table: Any,
    objects_root: str | Path,
    out_path: str | Path,
    title: str = DEFAULT_TITLE,
    limit: int | None = None,
) -> Path:
    """Write the gallery of a grasp table's rows (:func:`cards_from_table`; object meshes from
    ``<objects_root>/<object_id>/mesh.obj``) to `out_path` atomically."""
    return write_gallery(cards_from_table(table, objects_root, limit), out_path, title)
