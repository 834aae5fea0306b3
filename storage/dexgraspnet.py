"""Import DexGraspNet grasp files (``dexgraspnet/<object_code>.npy``) as seed grasp tables.

File format: ``np.save`` of a Python list of dicts (read with ``allow_pickle=True``: only load files
you trust, unpickling can run code). Each dict holds

- ``qpos``: dict of 28 floats: ``WRJTx/WRJTy/WRJTz`` palm translation (m), ``WRJRx/WRJRy/WRJRz``
  Euler angles 'sxyz' (rad), and the 22 finger joints ``robot0:FFJ3`` ... ``robot0:THJ0``. Extra keys
  are ignored. DexGraspNet's hand root is ``robot0:palm`` (its MJCF has no forearm), so ``qpos`` maps
  one-to-one onto our pose ``[t, euler, joints]`` (same euler convention, same joint order by name);
- ``scale``: float, the factor applied to the normalised object mesh;
- optional ``energy``, ``E_fc``, ``E_dis``, ``E_pen``, ``E_spen``, ``E_joints`` (and ``qpos_st``, the
  initial pose, ignored).

Object frames. The pose is in the frame of DexGraspNet's normalised mesh
(``meshdata/<object_code>/coacd/decomposed.obj``, centred on its bounding box and scaled to about unit
radius) multiplied by ``scale``. Our ingest (``dexlite_core.objects``) recentres a mesh on its bbox
centre and rescales it so its longest bbox edge equals ``ObjectConfig.size``. To make the frames
coincide, ingest the DGN mesh once per scale with ``size = scale * L`` where ``L`` is the longest bbox
edge of the *unscaled* DGN mesh; both meshes are then bbox-centred with the same extent, so the poses
are valid as they are. Map each scale to the resulting ``object_id`` with ``object_id_for_scale``
(e.g. ``{0.06: "mug-ab12...", 0.08: ...}.__getitem__``, or :func:`scale_lookup`). If the DGN mesh is
not exactly bbox-centred, translate the poses by the offset yourself; this importer does not move them.

Export (:func:`write_dexgraspnet_npy`) writes the same format back: one entry per table row (table
order) with ``qpos`` (the 28 names above, Python floats of the float32 pose) and ``scale``, plus the
energy keys whose table column holds a value for that row; :func:`read_dexgraspnet_npy` /
:func:`dexgraspnet_to_table` read it back exactly. The ``scale`` to write for one of our objects is
:func:`dexgraspnet_scale` of its ``mesh.obj``: DexGraspNet's normaliser (``asset_process/normalize.py``:
centre on the bbox, divide by 1.03 x the largest vertex radius) applied to our mesh and then scaled
by that factor gives our mesh back, so the exported poses sit in the frame DGN's object model builds.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from dexlite_core.atomic import atomic_path
from dexlite_core.dataset import ENERGY_COLUMNS, grasps_to_table
from dexlite_core.hand.asset import FINGER_JOINTS, JOINT_NAMES, POSE_DIM

TRANSLATION_NAMES: tuple[str, ...] = ("WRJTx", "WRJTy", "WRJTz")
ROTATION_NAMES: tuple[str, ...] = ("WRJRx", "WRJRy", "WRJRz")
DGN_QPOS_NAMES: tuple[str, ...] = TRANSLATION_NAMES + ROTATION_NAMES + JOINT_NAMES
DGN_ENERGY_KEYS: tuple[str, ...] = ENERGY_COLUMNS  # E_fc, E_dis, E_pen, E_spen, E_joints, energy

assert len(DGN_QPOS_NAMES) == POSE_DIM and len(JOINT_NAMES) == len(FINGER_JOINTS)


class DexGraspNetFormatError(ValueError):
    """A DexGraspNet grasp file does not have the expected structure (names the file and entry)."""


def _finite_float(value: Any, where: str) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError) as e:
        raise DexGraspNetFormatError(f"{where}: not a number ({value!r})") from e
    if not math.isfinite(x):
        raise DexGraspNetFormatError(f"{where}: not finite ({x})")
    return x


def load_pickled_npy(path: str | os.PathLike[str], kind: str, error: type[ValueError]) -> Any:
    """``np.load(path, allow_pickle=True)``, a 0-d object array unwrapped to its object (the
    field's grasp files are pickled lists or dicts: only load files you trust). A missing file is
    FileNotFoundError, unreadable bytes `error`, each naming the file and `kind` of grasp file."""
    name = os.fspath(path)
    if not os.path.isfile(name):
        raise FileNotFoundError(f"{kind} grasp file not found: {name}")
    try:
        raw = np.load(name, allow_pickle=True)
    except (ValueError, OSError, EOFError) as e:
        raise error(f"{name}: not a readable .npy file ({e})") from e
    return raw.item() if isinstance(raw, np.ndarray) and raw.dtype == object and raw.ndim == 0 else raw


def read_dexgraspnet_npy(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Load and validate a DexGraspNet ``.npy`` grasp file; return its entries as plain dicts.

    Each returned dict has ``qpos`` (dict of 28 finite floats, DGN names), ``scale`` (float > 0) and
    whichever energy keys were present (floats). Raises FileNotFoundError or
    :class:`DexGraspNetFormatError` naming the file, the entry index and the problem.
    """
    name = os.fspath(path)
    raw = load_pickled_npy(path, "DexGraspNet", DexGraspNetFormatError)
    if isinstance(raw, np.ndarray):
        if raw.dtype != object or raw.ndim != 1:
            raise DexGraspNetFormatError(
                f"{name}: expected a pickled list of dicts, got an array {raw.dtype} {raw.shape}"
            )
        entries = list(raw)
    elif isinstance(raw, (list, tuple)):
        entries = list(raw)
    else:
        raise DexGraspNetFormatError(f"{name}: expected a list of dicts, got {type(raw).__name__}")
    out = []
    for i, entry in enumerate(entries):
        where = f"{name} entry {i}"
        if not isinstance(entry, Mapping):
            raise DexGraspNetFormatError(f"{where}: expected a dict, got {type(entry).__name__}")
        qpos = entry.get("qpos")
        if not isinstance(qpos, Mapping):
            raise DexGraspNetFormatError(f"{where}: missing 'qpos' dict (keys: {sorted(entry)})")
        missing = [k for k in DGN_QPOS_NAMES if k not in qpos]
        if missing:
            raise DexGraspNetFormatError(f"{where}: qpos lacks {missing}")
        if "scale" not in entry:
            raise DexGraspNetFormatError(f"{where}: missing 'scale'")
        scale = _finite_float(entry["scale"], f"{where} scale")
        if scale <= 0:
            raise DexGraspNetFormatError(f"{where}: scale must be > 0, got {scale}")
        rec: dict[str, Any] = {
            "qpos": {k: _finite_float(qpos[k], f"{where} qpos[{k!r}]") for k in DGN_QPOS_NAMES},
            "scale": scale,
        }
        for k in DGN_ENERGY_KEYS:
            if entry.get(k) is not None:
                rec[k] = float(entry[k])  # energies may legitimately be inf: not checked
        out.append(rec)
    return out


def qpos_to_pose(qpos_list: list[Mapping[str, float]]) -> np.ndarray:
    """DGN ``qpos`` dicts -> ``(N, 28)`` float32 poses ``[t, euler sxyz, joints in JOINT_NAMES order]``."""
    q = np.array([[qp[k] for k in DGN_QPOS_NAMES] for qp in qpos_list], dtype=np.float64)
    return q.reshape(-1, POSE_DIM).astype(np.float32)


def scale_lookup(mapping: Mapping[float, str], rel_tol: float = 1e-6) -> Callable[[float], str]:
    """An ``object_id_for_scale`` callable from ``{scale: object_id}``, tolerant to float noise."""
    items = list(mapping.items())

    def lookup(scale: float) -> str:
        for s, oid in items:
            if math.isclose(s, scale, rel_tol=rel_tol):
                return oid
        raise KeyError(f"no object id for DexGraspNet scale {scale} (known: {sorted(mapping)})")

    return lookup


def dexgraspnet_to_table(
    npy_path: str | os.PathLike[str],
    object_id_for_scale: Callable[[float], str] | str,
) -> pa.Table:
    """A DexGraspNet grasp file as a grasp table (source ``"seed"``, ``grasp_id`` = entry index,
    energy columns where the file has them, null otherwise).

    ``object_id_for_scale``: our object id for every entry (a string), or a callable mapping each
    entry's ``scale`` to the object id of the mesh ingested at that scale (see module docstring).
    Rows keep the file order.
    """
    entries = read_dexgraspnet_npy(npy_path)
    scales = [e["scale"] for e in entries]
    if isinstance(object_id_for_scale, str):
        ids = [object_id_for_scale] * len(entries)
    else:
        cache: dict[float, str] = {}
        ids = []
        for s in scales:
            if s not in cache:
                try:
                    cache[s] = str(object_id_for_scale(s))
                except KeyError as e:
                    raise KeyError(f"{os.fspath(npy_path)}: {e.args[0] if e.args else e}") from e
            ids.append(cache[s])
    q = qpos_to_pose([e["qpos"] for e in entries])
    energies: dict[str, Any] = {}
    for k in DGN_ENERGY_KEYS:
        if any(k in e for e in entries):
            energies[k] = [e.get(k) for e in entries]
    return grasps_to_table(ids, q, "seed", grasp_id=np.arange(len(entries), dtype=np.int64), **energies)


# ------------------------------------------------------------------------------------------- export

DGN_NORMALISE_MARGIN = 1.03  # asset_process/normalize.py: radius / 1.03 (reference section 1.2)


def dexgraspnet_scale(vertices: np.ndarray) -> float:
    """DexGraspNet's ``scale`` of a mesh given by its vertices `(n, 3)` [m]: 1.03 x its largest
    vertex distance from its bbox centre (see the module docstring)."""
    v = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    if len(v) == 0 or not np.isfinite(v).all():
        raise ValueError(f"dexgraspnet_scale: need finite vertices, got {len(v)}")
    centre = (v.min(0) + v.max(0)) / 2
    radius = float(np.linalg.norm(v - centre, axis=1).max())
    if radius <= 0:
        raise ValueError("dexgraspnet_scale: the mesh is a single point")
    return DGN_NORMALISE_MARGIN * radius


def table_rows(table: Any) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    """A grasp table (pyarrow Table or pandas DataFrame with ``object_id`` and ``q``) as
    ``(arrow table, object ids (N,) str, poses (N, 28) float64)``; ValueError naming the first bad row."""
    from dexlite_core.sim.lift import grasp_table_poses  # pulls in MuJoCo: only where needed

    if not isinstance(table, pa.Table):
        import pandas as pd

        if not isinstance(table, pd.DataFrame):
            raise TypeError(f"expected a pyarrow Table or pandas DataFrame, got {type(table).__name__}")
        table = pa.Table.from_pandas(table, preserve_index=False)
    ids, q = grasp_table_poses(table)
    return table, ids, q


def pose_to_qpos(q: np.ndarray) -> list[dict[str, float]]:
    """Inverse of :func:`qpos_to_pose`: `(N, 28)` poses -> DGN ``qpos`` dicts of Python floats."""
    arr = np.asarray(q, dtype=np.float64).reshape(-1, POSE_DIM)
    return [dict(zip(DGN_QPOS_NAMES, row.tolist(), strict=True)) for row in arr]


def write_dexgraspnet_npy(
    table: Any,
    path: str | os.PathLike[str],
    scale_of: Callable[[str], float] | Mapping[str, float] | float,
) -> Path:
    """Write a grasp table as one DexGraspNet ``.npy`` grasp file (atomically); return its path.

    `table`: pyarrow Table or pandas DataFrame (``object_id``, ``q``, optional energy columns
    :data:`DGN_ENERGY_KEYS`). `scale_of`: each row's DGN ``scale`` from its object id (a callable, a
    mapping, or one float for every row; see :func:`dexgraspnet_scale`). Entries keep the table order;
    an energy key is written where its column holds a non-null, non-NaN value.
    """
    table, ids, q = table_rows(table)
    if isinstance(scale_of, Mapping):
        scales = dict(scale_of)
        scale_fn: Callable[[str], float] = scales.__getitem__
    elif callable(scale_of):
        scale_fn = scale_of
    else:
        value = float(scale_of)
        scale_fn = lambda _oid: value  # noqa: E731
    cache: dict[str, float] = {}
    for oid in ids:
        if oid not in cache:
            s = float(scale_fn(str(oid)))
            if not (math.isfinite(s) and s > 0):
                raise ValueError(f"DexGraspNet scale of object {oid!r} must be a finite number > 0, got {s}")
            cache[oid] = s
    energies = {k: table.column(k).to_pylist() for k in DGN_ENERGY_KEYS if k in table.column_names}
    q32 = q.astype(np.float32)  # the table's precision: the importer reads float32 back
    entries: list[dict[str, Any]] = []
    for i, qpos in enumerate(pose_to_qpos(q32)):
        entry: dict[str, Any] = {"qpos": qpos, "scale": cache[ids[i]]}
        for k, values in energies.items():
            v = values[i]
            if v is not None and not (isinstance(v, float) and math.isnan(v)):
                entry[k] = float(v)
        entries.append(entry)
    target = Path(path)
    arr = np.empty(len(entries), dtype=object)  # np.save of a list of dicts, as DexGraspNet's files
    arr[:] = entries
    with atomic_path(target) as tmp, open(tmp, "wb") as f:  # a handle: np.save adds no suffix
        np.save(f, arr, allow_pickle=True)
    return target
