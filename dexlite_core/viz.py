"""Pictures of grasps: the hand's visual meshes at pose q beside the object.

PNG: matplotlib, three views of one grasp (or a grid of grasps), no display needed.
HTML: :mod:`dexlite_core.gallery`'s self-contained page, one card per pose (inline JS, a 2D-canvas
software renderer, meshes embedded: nothing is fetched when it is opened, no WebGL needed); drag
to rotate, wheel to zoom.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import trimesh  # noqa: E402
from mpl_toolkits.mplot3d.art3d import Poly3DCollection  # noqa: E402

from .gallery import GraspCard, hand_model, write_gallery  # noqa: E402
from .hand.model import HandModel  # noqa: E402

VIEWS = ((20, -60), (20, 30), (80, -90))
HAND_RGBA = (0.85, 0.65, 0.5, 0.9)
OBJECT_RGBA = (0.35, 0.55, 0.8, 0.6)


def _hand() -> HandModel:
    return hand_model()  # one HandModel per process, shared with the gallery


def _draw(ax, meshes: Sequence[tuple[trimesh.Trimesh, tuple]], elev: float, azim: float) -> None:
    allv = []
    for mesh, rgba in meshes:
        tris = mesh.vertices[mesh.faces]
        ax.add_collection3d(Poly3DCollection(tris, facecolor=rgba, edgecolor=(0, 0, 0, 0.05), linewidth=0.1))
        allv.append(mesh.vertices)
    v = np.concatenate(allv)
    centre, half = (v.max(0) + v.min(0)) / 2, (v.max(0) - v.min(0)).max() / 2
    for set_lim, c in zip((ax.set_xlim, ax.set_ylim, ax.set_zlim), centre, strict=True):
        set_lim(c - half, c + half)
    ax.view_init(elev=elev, azim=azim)
    ax.set_axis_off()


def grasp_meshes(object_mesh: trimesh.Trimesh, q: np.ndarray) -> list[tuple[trimesh.Trimesh, tuple]]:
    """The object and the hand's meshes at `q (28,)`, with their colours."""
    q = np.asarray(q, dtype=np.float64).reshape(-1)
    if q.shape != (28,) or not np.isfinite(q).all():
        raise ValueError(f"a pose is 28 finite numbers, got shape {q.shape} with values {q[:6]}...")
    return [(object_mesh, OBJECT_RGBA)] + [(m, HAND_RGBA) for m in _hand().visual_meshes(q)]


def render_png(
    object_mesh: trimesh.Trimesh,
    poses: np.ndarray,
    out_path: str | Path,
    titles: Sequence[str] | None = None,
    views: Sequence[tuple[float, float]] = VIEWS,
) -> Path:
    """Write a PNG: one row per pose `poses (G, 28)`, one column per view."""
    poses = np.atleast_2d(np.asarray(poses, dtype=np.float64))
    fig = plt.figure(figsize=(3.2 * len(views), 3.2 * len(poses)))
    for r, q in enumerate(poses):
        meshes = grasp_meshes(object_mesh, q)
        for c, (elev, azim) in enumerate(views):
            ax = fig.add_subplot(len(poses), len(views), r * len(views) + c + 1, projection="3d")
            _draw(ax, meshes, elev, azim)
            if c == 0 and titles is not None:
                ax.set_title(titles[r], fontsize=8)
    fig.tight_layout()
    out_path = Path(out_path)
    tmp = out_path.with_name(f".{out_path.name}.tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(out_path)
    return out_path


def render_html(
    object_mesh: trimesh.Trimesh,
    poses: np.ndarray,
    out_path: str | Path,
    titles: Sequence[str] | None = None,
    object_id: str = "object",
) -> Path:
    """Write a self-contained interactive page (:func:`dexlite_core.gallery.write_gallery`): one card
    per pose of `poses (28,) or (G, 28)` on `object_mesh`, unscored, titled `titles` (default
    ``"<object_id> #<k>"``); atomically."""
    poses = np.asarray(poses, dtype=np.float64)
    if poses.ndim == 1:
        poses = poses[None]
    if poses.ndim != 2 or poses.shape[1] != 28:
        raise ValueError(f"poses must be (28,) or (G, 28), got shape {poses.shape}")
    if titles is not None and len(titles) != len(poses):
        raise ValueError(f"{len(titles)} titles for {len(poses)} poses")
    cards = [
        GraspCard(object_mesh=object_mesh, q=q, object_id=object_id, rank=k + 1,
                  label=None if titles is None else titles[k])
        for k, q in enumerate(poses)
    ]
    return write_gallery(cards, out_path, title=f"{object_id}: {len(cards)} grasp(s)")


def render_grasp(object_dir: str | Path, q: np.ndarray, out_path: str | Path) -> Path:
    """`dexlite show`: picture of pose(s) `q` on an ingested object; format from the suffix."""
    from .objects import load_object

    obj = load_object(Path(object_dir))
    out_path = Path(out_path)
    if out_path.suffix.lower() == ".html":
        return render_html(obj.mesh, np.asarray(q).reshape(-1, 28), out_path, object_id=obj.object_id)
    if out_path.suffix.lower() != ".png":
        raise ValueError(f"{out_path}: picture format must be .png or .html")
    return render_png(obj.mesh, q, out_path)
