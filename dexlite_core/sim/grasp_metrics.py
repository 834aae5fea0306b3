"""Analytic grasp quality from contacts: the Ferrari-Canny Q1 (epsilon) metric, pure numpy/scipy.

Q1 (Ferrari & Canny, "Planning optimal grasps", ICRA 1992) is the radius of the largest ball
around the origin of wrench space that fits inside the convex hull of the wrenches the contacts
can apply with unit normal force each (the L1 grasp wrench space): the smallest disturbance
wrench, in the worst direction, that the grasp resists with unit total contact force. It is 0
when the grasp is not force-closed.

DexGraspBench reports q1 with each friction cone linearised by 8 edges and the friction
coefficient halved to mu = 0.3, from one averaged contact per hand body
(:func:`contact_bodies_mean`), with positions centred and scaled by their mean norm; the defaults
here follow it.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import ConvexHull, QhullError

__all__ = ["contact_bodies_mean", "ferrari_canny_q1", "friction_cone_edges"]

_RANK_TOL = 1e-9  # relative singular value below which the wrenches span fewer than 6 dimensions


def _tangents(n: np.ndarray, refs: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Orthonormal tangent bases ``t1, t2`` (each (k, 3)) of unit normals ``n`` (k, 3).

    ``t1`` of contact j is the first of the reference vectors ``refs[j]`` ((k, r, 3), in order,
    on a unit scale) with a tangential component longer than 1e-6, projected and normalised; then
    the coordinate axes. Reference vectors that move with the grasp make the linearised cones, and so
    Q1, invariant to rigid motions (a fixed helper axis would turn each polygonal cone about its
    normal by a frame-dependent angle)."""
    k = len(n)
    axes = np.broadcast_to(np.eye(3), (k, 3, 3))
    cand = axes if refs is None else np.concatenate([refs, axes], axis=1)  # (k, r + 3, 3)
    tang = cand - np.einsum("kri,ki->kr", cand, n)[..., None] * n[:, None]
    length = np.linalg.norm(tang, axis=2)
    ok = length > 1e-6  # the coordinate axes always leave one of them
    first = np.argmax(ok, axis=1)
    t1 = tang[np.arange(k), first] / length[np.arange(k), first][:, None]
    return t1, np.cross(n, t1)


def friction_cone_edges(
    normals: np.ndarray, mu: float = 0.3, n_edges: int = 8, refs: np.ndarray | None = None
) -> np.ndarray:
    """Unit force edges of the linearised friction cones, (k, n_edges, 3).

    Edge i of contact j is ``n_j + mu (cos a_i t1_j + sin a_i t2_j)``, normalised, with
    ``a_i = 2 pi i / n_edges`` and ``t1_j, t2_j`` an orthonormal tangent basis of the unit normal
    ``n_j`` ((k, 3), pointing into the object); ``t1_j`` comes from ``refs`` ((k, r, 3) reference
    vectors, see :func:`_tangents`) when given, else from the coordinate axes."""
    n = np.asarray(normals, dtype=np.float64).reshape(-1, 3)
    n = n / np.linalg.norm(n, axis=1, keepdims=True)
    t1, t2 = _tangents(n, refs)
    a = 2.0 * np.pi * np.arange(n_edges) / n_edges
    tangential = np.cos(a)[None, :, None] * t1[:, None] + np.sin(a)[None, :, None] * t2[:, None]
    f = n[:, None] + mu * tangential
    return f / np.linalg.norm(f, axis=2, keepdims=True)


def ferrari_canny_q1(
    points: np.ndarray,
    normals: np.ndarray,
    mu: float = 0.3,
    n_edges: int = 8,
    center: np.ndarray | None = None,
    torque_scale: float | None = None,
) -> float:
    """Ferrari-Canny Q1 of point contacts with Coulomb friction (Ferrari & Canny 1992).

    Args:
        points: (k, 3) contact positions [m].
        normals: (k, 3) unit contact normals pointing from the hand INTO the object (the
            direction the finger pushes); normalised again here.
        mu: friction coefficient (DexGraspBench: 0.3, half the simulation's).
        n_edges: edges of each linearised friction cone (DexGraspBench: 8).
        center: (3,) point torques are taken about; default the mean of ``points``. Pass the
            object's centre of mass when it is known.
        torque_scale: length [m] torques are divided by, so force and torque rows are unit-free
            and comparable; default the mean distance of ``points`` from ``center`` (DexGraspBench
            centres the positions and scales them by their mean norm).

    Returns:
        Q1 >= 0: the radius of the largest origin-centred ball inside the convex hull of the
        ``k * n_edges`` 6-D edge wrenches ``[f, (p - center) x f / torque_scale]``. 0.0 when
        there are fewer than 2 contacts, when the origin is not strictly inside the hull (no
        force closure), or when the hull is degenerate (all wrenches in a hyperplane).

    The 8-gon cone of each contact is turned about its normal so that its first edge leans along
    the contact's lever arm ``p - center`` (or, when that is along the normal, another contact's
    lever arm): the polygon then moves with the grasp and Q1 is invariant to rigid motions of
    points, normals and center together, which a fixed helper axis would not give.
    """
    p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    n = np.asarray(normals, dtype=np.float64).reshape(-1, 3)
    if p.shape != n.shape:
        raise ValueError(f"points {p.shape} and normals {n.shape} differ in shape")
    # a body's averaged normal vanishes when its contacts' normals cancel: such a contact has no
    # direction to push in, so it drops out
    length = np.linalg.norm(n, axis=1)
    keep = np.isfinite(length) & (length > 1e-9) & np.isfinite(p).all(axis=1)
    p, n = p[keep], n[keep]
    if len(p) < 2:
        return 0.0
    c = p.mean(axis=0) if center is None else np.asarray(center, dtype=np.float64).reshape(3)
    r = p - c
    scale = float(np.linalg.norm(r, axis=1).mean()) if torque_scale is None else float(torque_scale)
    if not np.isfinite(scale) or scale <= 0.0:
        scale = 1.0
    # tangent references for the cone edges: the contact's own lever arm, then the others' in order
    # (all move with the grasp, so Q1 does not depend on the frame it is expressed in)
    u = r / scale
    refs = np.concatenate([u[:, None], np.broadcast_to(u[None], (len(u), len(u), 3))], axis=1)
    f = friction_cone_edges(n, mu, n_edges, refs)  # (k, e, 3)
    tau = np.cross(r[:, None], f) / scale  # (k, e, 3)
    w = np.concatenate([f, tau], axis=2).reshape(-1, 6)
    # wrenches in a hyperplane through the origin (e.g. two point contacts: no torque about their
    # axis) leave the origin on the boundary; a joggled hull would report a spurious ~1e-10
    try:
        sv = np.linalg.svd(w, compute_uv=False)
    except np.linalg.LinAlgError:
        return 0.0
    if sv[-1] <= _RANK_TOL * sv[0]:
        return 0.0
    hull = None
    for options in ("QJ", None):
        try:
            hull = ConvexHull(w, qhull_options=options)
            break
        except (QhullError, ValueError):
            continue
    if hull is None:
        return 0.0
    # facets: normal . x + offset <= 0 inside, unit normals, so -offset is the origin's distance
    offsets = hull.equations[:, -1]
    if not np.all(offsets < 0.0):
        return 0.0
    return float(-offsets.max())


def contact_bodies_mean(
    body_ids: np.ndarray, pos: np.ndarray, normal: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One averaged contact per body, as DexGraspBench merges the contacts of each hand link.

    Args:
        body_ids: (m,) body (link) id of each contact.
        pos: (m, 3) contact positions.
        normal: (m, 3) contact normals.

    Returns:
        ``(pos (k, 3), normal (k, 3))`` for the k distinct bodies in ascending id order: the mean
        position and the normalised mean normal of each body's contacts (a zero mean normal stays
        zero).
    """
    ids = np.asarray(body_ids).reshape(-1)
    p = np.asarray(pos, dtype=np.float64).reshape(-1, 3)
    n = np.asarray(normal, dtype=np.float64).reshape(-1, 3)
    if not (len(ids) == len(p) == len(n)):
        raise ValueError(f"body_ids {ids.shape}, pos {p.shape}, normal {n.shape} differ in length")
    uniq, inv = np.unique(ids, return_inverse=True)
    count = np.bincount(inv, minlength=len(uniq)).astype(np.float64)[:, None]
    mp = np.zeros((len(uniq), 3))
    mn = np.zeros((len(uniq), 3))
    np.add.at(mp, inv, p)
    np.add.at(mn, inv, n)
    mp /= np.maximum(count, 1.0)
    norm = np.linalg.norm(mn, axis=1, keepdims=True)
    mn = np.divide(mn, norm, out=np.zeros_like(mn), where=norm > 0)
    return mp, mn
