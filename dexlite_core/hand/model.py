"""Differentiable Shadow Hand model: pose `(B, 28)` -> world-frame points and collision primitives.

Geometry is read from the MJCF's collision geoms (class ``DC_Hand``): 16 capsules (finger and thumb
links) and 3 boxes (two palm boxes and the little-finger metacarpal). From them we derive, once, in
each link's frame:

* contact candidates: 10 points on the palmar side of each of the 14 finger/thumb links that
  DexGraspNet uses (proximal, middle, distal of FF/MF/RF/LF; thmiddle, thdistal) plus 12 on the
  palm's palmar face (152 in all). Fingers flex towards their link's -y, the thumb towards -x;
* surface points: an even sampling of every capsule and box surface (pictures, diagnostics);
* a sphere cover: spheres along every capsule's axis and over every box's mid-plane, whose union
  is the collision model to within ~1.5 mm (penetration against the object's SDF);
* keypoints: DexGraspNet's 19 spheres on the link axes (self-penetration).

:meth:`HandModel.forward` computes, for a batch of poses:
  1. root rotation `R = Rz Ry Rx` from the Euler angles and translation `t` (pose layout in
     :mod:`dexlite_core.hand.asset`);
  2. link transforms in the palm frame by batched FK (pytorch_kinematics);
  3. world transforms `T_w = [R | t] @ T_link`, `(B, L, 4, 4)`;
and :class:`HandState` maps link-frame point sets to the world on demand, all differentiable in q.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import mujoco
import numpy as np
import torch

from .asset import N_JOINTS, POSE_DIM, PREFIX, hand_model, joint_limits
from .kinematics import HandKinematics
from .rotation import euler_to_matrix

FINGERS = ("ff", "mf", "rf", "lf")
CONTACT_LINKS = tuple(f"{PREFIX}{f}{s}" for f in FINGERS for s in ("proximal", "middle", "distal")) + (
    f"{PREFIX}thmiddle",
    f"{PREFIX}thdistal",
)
# DexGraspNet's self-penetration keypoints: (link, z on the link axis)
KEYPOINTS = tuple(
    kp
    for f in FINGERS
    for kp in (
        (f"{PREFIX}{f}proximal", 0.024),
        (f"{PREFIX}{f}middle", 0.0),
        (f"{PREFIX}{f}middle", 0.025),
        (f"{PREFIX}{f}distal", 0.024),
    )
) + ((f"{PREFIX}thproximal", 0.038), (f"{PREFIX}thmiddle", 0.032), (f"{PREFIX}thdistal", 0.026))
SPEN_RADIUS = 0.01


@dataclass(frozen=True)
class HandGeometry:
    """Link-frame geometry (NumPy, float64). `L` links, indices into ``link_names``."""

    link_names: tuple[str, ...]
    cap_link: np.ndarray  # (C,) int
    cap_a: np.ndarray  # (C, 3) segment start
    cap_b: np.ndarray  # (C, 3) segment end
    cap_r: np.ndarray  # (C,)
    box_link: np.ndarray  # (K,)
    box_center: np.ndarray  # (K, 3)
    box_rot: np.ndarray  # (K, 3, 3) box frame -> link frame
    box_half: np.ndarray  # (K, 3)
    cand_link: np.ndarray  # (M,)
    cand_pos: np.ndarray  # (M, 3)
    cand_normal: np.ndarray  # (M, 3) outward surface normal
    surf_link: np.ndarray  # (S,)
    surf_pos: np.ndarray  # (S, 3)
    kp_link: np.ndarray  # (P,)
    kp_pos: np.ndarray  # (P, 3)
    sph_link: np.ndarray  # (Q,)
    sph_pos: np.ndarray  # (Q, 3) centres of the sphere cover of the collision model
    sph_r: np.ndarray  # (Q,)


def _quat_to_mat(quat: np.ndarray) -> np.ndarray:
    mat = np.zeros(9)
    mujoco.mju_quat2Mat(mat, np.asarray(quat, dtype=np.float64))
    return mat.reshape(3, 3)


def _palmar_dir(link: str) -> np.ndarray:
    return np.array([-1.0, 0.0, 0.0]) if "th" in link.removeprefix(PREFIX)[:2] else np.array([0.0, -1.0, 0.0])


def _capsule_surface(a: np.ndarray, b: np.ndarray, r: float, spacing: float) -> np.ndarray:
    """Roughly even points on a capsule's surface: rings on the cylinder plus two hemispheres."""
    axis = (b - a) / np.linalg.norm(b - a)
    u = np.cross(axis, [1.0, 0.0, 0.0] if abs(axis[0]) < 0.9 else [0.0, 1.0, 0.0])
    u /= np.linalg.norm(u)
    v = np.cross(axis, u)
    n_around = max(6, int(round(2 * math.pi * r / spacing)))
    n_along = max(2, int(round(np.linalg.norm(b - a) / spacing)) + 1)
    phi = np.linspace(0, 2 * math.pi, n_around, endpoint=False)
    ring = np.cos(phi)[:, None] * u + np.sin(phi)[:, None] * v  # (n_around, 3)
    pts = [a + s * (b - a) + r * ring for s in np.linspace(0, 1, n_along)]
    n_lat = max(2, int(round(0.5 * math.pi * r / spacing)))
    for centre, sign in ((a, -1.0), (b, 1.0)):
        for theta in np.linspace(0, 0.5 * math.pi, n_lat + 1)[1:]:
            k = max(1, int(round(n_around * math.cos(theta))))
            ph = np.linspace(0, 2 * math.pi, k, endpoint=False)
            circ = np.cos(ph)[:, None] * u + np.sin(ph)[:, None] * v
            pts.append(centre + r * (math.cos(theta) * circ + sign * math.sin(theta) * axis))
    return np.concatenate([np.atleast_2d(p) for p in pts])


def _box_surface(half: np.ndarray, spacing: float) -> np.ndarray:
    """Points on the six faces of an axis-aligned box of half-extents `half` (box frame)."""
    pts = []
    for axis in range(3):
        o1, o2 = [i for i in range(3) if i != axis]
        g1 = np.linspace(-half[o1], half[o1], max(2, int(round(2 * half[o1] / spacing)) + 1))
        g2 = np.linspace(-half[o2], half[o2], max(2, int(round(2 * half[o2] / spacing)) + 1))
        m1, m2 = np.meshgrid(g1, g2, indexing="ij")
        for sign in (-1.0, 1.0):
            face = np.zeros((m1.size, 3))
            face[:, axis] = sign * half[axis]
            face[:, o1], face[:, o2] = m1.ravel(), m2.ravel()
            pts.append(face)
    return np.unique(np.round(np.concatenate(pts), 9), axis=0)


_Capsule = tuple[int, np.ndarray, np.ndarray, float]  # (link index, segment start, segment end, radius)
_Box = tuple[int, np.ndarray, np.ndarray, np.ndarray]  # (link index, centre, box->link rotation, half-extents)


def _collision_primitives(m: mujoco.MjModel) -> tuple[list[str], list[_Capsule], list[_Box]]:
    """The MJCF's collision capsules and boxes in their link's frame, and the links that carry them."""
    link_names: list[str] = []
    caps, boxes = [], []
    for g in range(m.ngeom):
        geom = m.geom(g)
        if int(geom.contype[0]) == 0 or int(geom.group[0]) != 4:
            continue  # visual-only geoms
        body = m.body(int(geom.bodyid[0])).name
        if body not in link_names:
            link_names.append(body)
        li = link_names.index(body)
        rot, pos = _quat_to_mat(geom.quat), np.asarray(geom.pos, dtype=np.float64)
        if int(geom.type[0]) == mujoco.mjtGeom.mjGEOM_CAPSULE:
            r, h = float(geom.size[0]), float(geom.size[1])
            caps.append((li, pos - h * rot[:, 2], pos + h * rot[:, 2], r))
        elif int(geom.type[0]) == mujoco.mjtGeom.mjGEOM_BOX:
            boxes.append((li, pos, rot, np.asarray(geom.size, dtype=np.float64)))
    return link_names, caps, boxes


def _add_links(link_names: list[str], links: tuple[str, ...]) -> None:
    """Append (in place, once each) the links that points refer to but no collision geom carries."""
    for link in links:
        if link not in link_names:
            link_names.append(link)


def _capsule_candidates(link_names: list[str], caps: list[_Capsule]) -> tuple[list, list, list]:
    """Contact candidates on the finger links: 5 axial stations x 2 angles (+-30 deg about palmar)."""
    cand_link, cand_pos, cand_normal = [], [], []
    for li, a, b, r in caps:
        link = link_names[li]
        if link not in CONTACT_LINKS:
            continue
        palmar = _palmar_dir(link)
        axis = (b - a) / np.linalg.norm(b - a)
        side = np.cross(axis, palmar)
        stations = np.linspace(0.2, 1.0 if "distal" in link else 0.9, 5)
        for s in stations:
            for ang in (-math.radians(30), math.radians(30)):
                n = math.cos(ang) * palmar + math.sin(ang) * side
                cand_link.append(li)
                cand_pos.append(a + s * (b - a) + r * n)
                cand_normal.append(n)
    return cand_link, cand_pos, cand_normal


def _palm_candidates(link_names: list[str], boxes: list[_Box]) -> tuple[list, list, list]:
    """Contact candidates on the main palm box's palmar face: a 4 x 3 grid."""
    cand_link, cand_pos, cand_normal = [], [], []
    for li, centre, rot, half in boxes:
        if link_names[li] != f"{PREFIX}palm" or half[0] < 0.02:
            continue  # only the main palm box carries candidates
        for x in np.linspace(-0.75, 0.75, 4) * half[0]:
            for z in np.linspace(-0.6, 0.8, 3) * half[2]:
                cand_link.append(li)
                cand_pos.append(centre + rot @ np.array([x, -half[1], z]))
                cand_normal.append(rot @ np.array([0.0, -1.0, 0.0]))
    return cand_link, cand_pos, cand_normal


def _contact_candidates(link_names: list[str], caps: list[_Capsule], boxes: list[_Box]) -> tuple[list, list, list]:
    """All contact candidates (link, position, outward normal), grouped by link."""
    fl, fp, fn = _capsule_candidates(link_names, caps)
    pl, pp, pn = _palm_candidates(link_names, boxes)
    cand_link, cand_pos, cand_normal = fl + pl, fp + pp, fn + pn
    order = np.argsort(cand_link, kind="stable")  # group by link (see LinkPoints)
    cand_link = [cand_link[i] for i in order]
    cand_pos = [cand_pos[i] for i in order]
    cand_normal = [cand_normal[i] for i in order]
    return cand_link, cand_pos, cand_normal


def _surface_points(caps: list[_Capsule], boxes: list[_Box], spacing: float) -> tuple[list, list]:
    """Even samples of every capsule and box surface: (link per point, list of `(n, 3)` blocks)."""
    surf_link, surf_pos = [], []
    for li, a, b, r in caps:
        p = _capsule_surface(a, b, r, spacing)
        surf_link += [li] * len(p)
        surf_pos.append(p)
    for li, centre, rot, half in boxes:
        p = _box_surface(half, spacing) @ rot.T + centre
        surf_link += [li] * len(p)
        surf_pos.append(p)
    return surf_link, surf_pos


def _capsule_spheres(caps: list[_Capsule]) -> tuple[list, list, list]:
    """Spheres of each capsule's radius along its axis, spaced r/2: (link, centre, radius)."""
    sph_link, sph_pos, sph_r = [], [], []
    for li, a, b, r in caps:
        k = int(np.ceil(np.linalg.norm(b - a) / (0.5 * r))) + 1
        for s in np.linspace(0, 1, k):
            sph_link.append(li), sph_pos.append(a + s * (b - a)), sph_r.append(r)
    return sph_link, sph_pos, sph_r


def _box_spheres(boxes: list[_Box]) -> tuple[list, list, list]:
    """Spheres over each box's mid-plane, radius half its thinnest extent: (link, centre, radius)."""
    sph_link, sph_pos, sph_r = [], [], []
    for li, centre, rot, half in boxes:
        thin = int(np.argmin(half))
        r = float(half[thin])
        o1, o2 = [i for i in range(3) if i != thin]
        g1 = np.linspace(-half[o1] + r, half[o1] - r, max(2, int(np.ceil(2 * (half[o1] - r) / r)) + 1))
        g2 = np.linspace(-half[o2] + r, half[o2] - r, max(2, int(np.ceil(2 * (half[o2] - r) / r)) + 1))
        for x in g1:
            for y in g2:
                local = np.zeros(3)
                local[o1], local[o2] = x, y
                sph_link.append(li), sph_pos.append(centre + rot @ local), sph_r.append(r)
    return sph_link, sph_pos, sph_r


def _sphere_cover(caps: list[_Capsule], boxes: list[_Box]) -> tuple[list, list, list]:
    """Sphere cover of the collision model (link, centre, radius): capsule spheres, then box spheres.

    A sphere overlaps the object iff phi(centre) < r.
    """
    cl, cp, cr = _capsule_spheres(caps)
    bl, bp, br = _box_spheres(boxes)
    return cl + bl, cp + bp, cr + br


@functools.lru_cache(maxsize=4)
def hand_geometry(surface_spacing: float = 0.009) -> HandGeometry:
    """Read collision primitives from the MJCF and derive candidates, surface points, keypoints."""
    link_names, caps, boxes = _collision_primitives(hand_model())
    _add_links(link_names, CONTACT_LINKS + tuple(k for k, _ in KEYPOINTS))
    cand_link, cand_pos, cand_normal = _contact_candidates(link_names, caps, boxes)
    surf_link, surf_pos = _surface_points(caps, boxes, surface_spacing)
    sph_link, sph_pos, sph_r = _sphere_cover(caps, boxes)
    kp_link = [link_names.index(link) for link, _ in KEYPOINTS]
    kp_pos = [np.array([0.0, 0.0, z]) for _, z in KEYPOINTS]
    return HandGeometry(
        link_names=tuple(link_names),
        cap_link=np.array([c[0] for c in caps]),
        cap_a=np.array([c[1] for c in caps]),
        cap_b=np.array([c[2] for c in caps]),
        cap_r=np.array([c[3] for c in caps]),
        box_link=np.array([bx[0] for bx in boxes]),
        box_center=np.array([bx[1] for bx in boxes]),
        box_rot=np.array([bx[2] for bx in boxes]),
        box_half=np.array([bx[3] for bx in boxes]),
        cand_link=np.array(cand_link),
        cand_pos=np.array(cand_pos),
        cand_normal=np.array(cand_normal),
        surf_link=np.array(surf_link),
        surf_pos=np.concatenate(surf_pos),
        kp_link=np.array(kp_link),
        kp_pos=np.array(kp_pos),
        sph_link=np.array(sph_link),
        sph_pos=np.array(sph_pos),
        sph_r=np.array(sph_r),
    )


class PointBank:
    """Fixed link-frame point sets, mapped to the world by one matrix product.

    Every point p on link l is a column of a sparse `(4 L, P)` matrix holding `[p; 1]` in block l;
    with the stacked `[R_l | t_l]` of all links as `W (B, 3, 4 L)`, the world points of every set
    are `W @ M`: one dense GEMM (and one in backward), 5x faster on CPU than gathering a transform
    per point or padding points per link.
    """

    def __init__(self, sets: dict[str, tuple[np.ndarray, np.ndarray]], n_links: int, dtype, device) -> None:
        blocks, self.slices, start = [], {}, 0
        self.link: dict[str, torch.Tensor] = {}
        for name, (link, local) in sets.items():
            n = len(link)
            m = np.zeros((n_links, 4, n))
            cols = np.arange(n)
            m[link, :3, cols] = local
            m[link, 3, cols] = 1.0
            blocks.append(m.reshape(4 * n_links, n))
            self.slices[name] = slice(start, start + n)
            self.link[name] = torch.as_tensor(link, dtype=torch.long, device=device)
            start += n
        self.matrix = torch.as_tensor(np.concatenate(blocks, axis=1), dtype=dtype, device=device)
        self.local = {k: torch.as_tensor(v[1], dtype=dtype, device=device) for k, v in sets.items()}

    def world(self, link_T: torch.Tensor) -> torch.Tensor:
        """Args: link_T `(B, L, 4, 4)`. Returns all sets' world points `(B, P, 3)`."""
        B, L = link_T.shape[:2]
        W = link_T[:, :, :3, :].permute(0, 2, 1, 3).reshape(B, 3, 4 * L)
        return (W @ self.matrix).transpose(1, 2)


class HandState:
    """World-frame hand for a batch of B poses. Point sets are computed once on first access."""

    def __init__(self, model: HandModel, q: torch.Tensor, link_T: torch.Tensor) -> None:
        self.model = model
        self.q = q  # (B, 28)
        self.link_T = link_T  # (B, L, 4, 4) world frame

    @functools.cached_property
    def _points(self) -> torch.Tensor:
        return self.model.bank.world(self.link_T)

    def _set(self, name: str) -> torch.Tensor:
        return self._points[:, self.model.bank.slices[name]]

    @functools.cached_property
    def contact_candidates(self) -> torch.Tensor:
        """`(B, M, 3)` world positions of all contact candidates."""
        return self._set("candidates")

    def contact_points(self, contact_idx: torch.Tensor) -> torch.Tensor:
        """`(B, K, 3)` world positions of the chosen candidates `contact_idx (B, K)`."""
        g = self.model
        link = g.cand_link[contact_idx]  # (B, K)
        T = torch.gather(self.link_T, 1, link[..., None, None].expand(-1, -1, 4, 4))  # (B, K, 4, 4)
        local = g.cand_pos[contact_idx]  # (B, K, 3)
        return (T[..., :3, :3] @ local.unsqueeze(-1)).squeeze(-1) + T[..., :3, 3]

    @functools.cached_property
    def surface_points(self) -> torch.Tensor:
        """`(B, S, 3)` world positions of the hand surface samples."""
        return self.model.surface_bank.world(self.link_T)

    @functools.cached_property
    def sphere_centres(self) -> torch.Tensor:
        """`(B, Q, 3)` world centres of the sphere cover (radii: ``model.sphere_r (Q,)``)."""
        return self._set("spheres")

    @functools.cached_property
    def keypoints(self) -> torch.Tensor:
        """`(B, P, 3)` world positions of the self-penetration keypoints."""
        return self._set("keypoints")

    @functools.cached_property
    def capsules(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """World capsule segments `a, b (B, C, 3)` and radii `(C,)`."""
        return self._set("cap_a"), self._set("cap_b"), self.model.cap_r

    def signed_distance(self, points: torch.Tensor) -> torch.Tensor:
        """Signed distance of points to the hand's collision model, POSITIVE INSIDE the hand.

        Args: points `(B, N, 3)` or `(N, 3)` world points. Returns `(B, N)`: the maximum over
        capsules and boxes of the penetration depth (negative: distance to the nearest primitive).
        """
        g = self.model
        B = self.q.shape[0]
        pts = points.expand(B, -1, -1) if points.dim() == 2 else points
        a, b, r = self.capsules  # (B, C, 3)
        ab = b - a
        ap = pts[:, None] - a[:, :, None]  # (B, C, N, 3)
        s = ((ap * ab[:, :, None]).sum(-1) / (ab * ab).sum(-1)[..., None]).clamp(0, 1)
        d_cap = r[None, :, None] - (ap - s[..., None] * ab[:, :, None]).norm(dim=-1)  # (B, C, N)
        # boxes: world point -> box frame
        Tb = self.link_T[:, g.box_link]  # (B, K, 4, 4)
        R = Tb[..., :3, :3] @ g.box_rot  # (B, K, 3, 3)
        c = (Tb[..., :3, :3] @ g.box_center.unsqueeze(-1)).squeeze(-1) + Tb[..., :3, 3]
        local = (pts[:, None] - c[:, :, None]) @ R  # (B, K, N, 3)
        qd = local.abs() - g.box_half[None, :, None]
        outside = qd.clamp(min=0).norm(dim=-1) + qd.max(dim=-1).values.clamp(max=0)
        return torch.cat([d_cap, -outside], dim=1).max(dim=1).values

    def self_penetration(self) -> torch.Tensor:
        """`(B,)` DexGraspNet's E_spen: sum over keypoint pairs on different links of
        relu(2 r - |k_i - k_j|), each unordered pair counted once."""
        k = self.keypoints
        d = torch.cdist(k, k)  # (B, P, P)
        return (torch.relu(2 * SPEN_RADIUS - d) * self.model.kp_pair_mask).sum((1, 2))


class HandModel:
    """The hand on one device/dtype. ``forward(q (B, 28)) -> HandState``; see module docstring."""

    def __init__(
        self,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        surface_spacing: float = 0.009,
    ) -> None:
        self.device, self.dtype = torch.device(device), dtype
        geo = hand_geometry(surface_spacing)
        self.geometry = geo
        self.kin = HandKinematics(list(geo.link_names), dtype, self.device)

        def t(x: np.ndarray, dt: torch.dtype = dtype) -> torch.Tensor:
            return torch.as_tensor(x, dtype=dt, device=self.device)

        long = torch.long
        n_links = len(geo.link_names)
        # the surface samples are many and used only for diagnostics: a bank of their own
        self.bank = PointBank(
            {
                "candidates": (geo.cand_link, geo.cand_pos),
                "spheres": (geo.sph_link, geo.sph_pos),
                "keypoints": (geo.kp_link, geo.kp_pos),
                "cap_a": (geo.cap_link, geo.cap_a),
                "cap_b": (geo.cap_link, geo.cap_b),
            },
            n_links,
            dtype,
            self.device,
        )
        self.surface_bank = PointBank({"surface": (geo.surf_link, geo.surf_pos)}, n_links, dtype, self.device)
        self.cap_r = t(geo.cap_r)
        self.box_link, self.box_center, self.box_rot, self.box_half = (
            t(geo.box_link, long), t(geo.box_center), t(geo.box_rot), t(geo.box_half)
        )  # fmt: skip
        self.sphere_r = t(geo.sph_r)
        self.cand_link, self.cand_pos, self.cand_normal = (
            t(geo.cand_link, long), t(geo.cand_pos), t(geo.cand_normal)
        )  # fmt: skip
        self.surface_link = t(geo.surf_link, long)
        self.capsule_link = t(geo.cap_link, long)
        kp_link = t(geo.kp_link, long)
        different = kp_link[:, None] != kp_link[None, :]
        self.kp_pair_mask = torch.triu(different, diagonal=1).to(dtype)
        lo, hi = joint_limits()
        self.lower, self.upper = t(lo), t(hi)

    @property
    def n_candidates(self) -> int:
        return int(self.cand_pos.shape[0])

    def root_transform(self, q: torch.Tensor) -> torch.Tensor:
        """`(B, 4, 4)` palm-to-world transform from the first 6 pose entries."""
        T = torch.zeros(q.shape[0], 4, 4, dtype=q.dtype, device=q.device)
        T[:, :3, :3] = euler_to_matrix(q[:, 3:6])
        T[:, :3, 3] = q[:, :3]
        T[:, 3, 3] = 1.0
        return T

    def forward(self, q: torch.Tensor) -> HandState:
        """Args: q `(B, 28)`. Returns the world-frame :class:`HandState`."""
        if q.dim() != 2 or q.shape[1] != POSE_DIM:
            raise ValueError(f"pose batch must be (B, {POSE_DIM}), got {tuple(q.shape)}")
        link_T = self.kin.link_transforms(q[:, 6 : 6 + N_JOINTS])  # (B, L, 4, 4)
        return HandState(self, q, self.root_transform(q)[:, None] @ link_T)

    __call__ = forward

    def joint_limit_violation(self, q: torch.Tensor) -> torch.Tensor:
        """`(B,)` sum over the 22 joints of relu(q - upper) + relu(lower - q)."""
        j = q[:, 6:]
        return (torch.relu(j - self.upper) + torch.relu(self.lower - j)).sum(-1)

    def visual_meshes(self, q: np.ndarray) -> list:
        """Trimesh meshes of the hand's visual STL geoms at one pose `q (28,)` (for pictures)."""
        import trimesh

        m = hand_model()
        data = mujoco.MjData(m)
        data.qpos[:] = np.asarray(q[6:], dtype=np.float64)
        mujoco.mj_kinematics(m, data)
        R = euler_to_matrix(torch.as_tensor(np.asarray(q[3:6], dtype=np.float64))).numpy()
        out = []
        for g in range(m.ngeom):
            if int(m.geom_type[g]) != mujoco.mjtGeom.mjGEOM_MESH:
                continue
            mid = int(m.geom_dataid[g])
            va, vn = int(m.mesh_vertadr[mid]), int(m.mesh_vertnum[mid])
            fa, fn = int(m.mesh_faceadr[mid]), int(m.mesh_facenum[mid])
            verts = m.mesh_vert[va : va + vn].astype(np.float64)
            faces = m.mesh_face[fa : fa + fn]
            world = verts @ data.geom_xmat[g].reshape(3, 3).T + data.geom_xpos[g]
            out.append(trimesh.Trimesh(world @ R.T + np.asarray(q[:3]), faces, process=False))
        return out
