"""The grasp gallery (dexlite_core.gallery): one self-contained HTML page, checked as text and in a
real headless Chromium (the cards' canvases must actually draw). Without a browser the browser tests
skip locally but FAIL when the environment variable CI is set (.ci/run installs Debian's chromium)."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import trimesh

from dexlite_core import gallery

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROME_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--virtual-time-budget=5000",
)
STATUSES = ["held", "dropped", "unscored", "held"]


def _pose(k: int) -> np.ndarray:
    q = np.zeros(28)
    q[:3] = [0.0, -0.09, -0.05]  # palm below and behind the object, fingers along +z
    q[3] = 0.2 * k
    q[6:] = 0.15 * (k + 1) * np.linspace(0.2, 1.0, 22)
    return q


def _cards() -> list[dict]:
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=0.04)  # 5120 faces: decimated
    box = trimesh.creation.box(extents=(0.05, 0.06, 0.08))
    valid = {"held": True, "dropped": False, "unscored": None}
    return [
        {
            "object_mesh": sphere if k % 2 == 0 else box,
            "q": _pose(k),
            "object_id": "sphere-0123456789" if k % 2 == 0 else "box-abcdef0123",
            "rank": k // 2 + 1,
            "valid": valid[s],
            "verdicts": {"lift": valid[s], "DexGraspBench": None},
            "metrics": {"penetration_depth_mm": 1.5 * k, "q1": 0.01 * k, "contact_count": k},
        }
        for k, s in enumerate(STATUSES)
    ]


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return gallery.write_gallery(_cards(), tmp_path_factory.mktemp("gallery") / "grasps.html", title="test <gallery>")


class _Cards(HTMLParser):
    """Attributes of every element whose class list has `grasp-card`, and of <body>."""

    def __init__(self) -> None:
        super().__init__()
        self.cards: list[dict] = []
        self.body: dict = {}

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if "grasp-card" in (a.get("class") or "").split():
            self.cards.append(a)
        if tag == "body":
            self.body = a


def _parse(text: str) -> _Cards:
    p = _Cards()
    p.feed(text)
    return p


# ------------------------------------------------------------------------------- Python level


def test_page_is_self_contained_one_card_per_grasp(page: Path) -> None:
    text = page.read_text()
    parsed = _parse(text)
    assert [c["data-status"] for c in parsed.cards] == STATUSES
    assert [c["data-rank"] for c in parsed.cards] == ["1", "1", "2", "2"]  # as given, not re-sorted
    assert all(c["data-rendered"] == "0" for c in parsed.cards)  # only the JS sets it to 1
    assert not re.search(r"https?://", text)  # nothing to fetch: no CDN script, link, font or image
    assert not re.search(r"<script[^>]*\bsrc=|<link\b|<img\b|@import|url\(", text, re.I)
    assert "test &lt;gallery&gt;" in text and "<gallery>" not in text  # the title is escaped
    blob = re.search(r'<script type="application/json" id="dexlite-gallery-data">(.*?)</script>', text, re.S)
    data = json.loads(blob.group(1))
    assert len(data["cards"]) == 4 and len(data["objects"]) == 2  # each object embedded once
    assert len(data["hand"]) == len(gallery.hand_model().visual_meshes(np.zeros(28)))
    hand_faces = sum(len(base64.b64decode(h["f"])) // 6 for h in data["hand"])
    assert 1000 < hand_faces <= gallery.HAND_FACES
    assert "penetration (mm)" in text and ">4.5<" in text and "DexGraspBench –" in text
    assert page.stat().st_size < 400_000


def test_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "g.html"
    out.write_text("old page")
    bad = _cards()[:2]
    bad[1]["q"] = np.full(28, np.nan)
    with pytest.raises(ValueError, match=r"card 1 \(box-abcdef0123\).*28 finite"):
        gallery.write_gallery(bad, out)
    import dexlite_core.atomic as atomic

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        gallery.write_gallery(_cards()[:1], out)
    assert out.read_text() == "old page"  # never a partial page
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.html"]  # no temp file left behind
    monkeypatch.undo()
    gallery.write_gallery(_cards()[:1], out)
    assert out.read_text().count('class="grasp-card') == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.html"]


def test_decimate_caps_faces_and_keeps_shape() -> None:
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=0.05)
    v, f = gallery.decimate(sphere.vertices, sphere.faces, 600)
    assert 300 < len(f) <= 600 and f.max() < len(v)
    assert np.allclose(np.linalg.norm(v, axis=1), 0.05, atol=0.006)  # still the sphere
    normals = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    assert (np.einsum("ij,ij->i", normals, v[f].mean(1)) > 0).mean() > 0.95  # winding kept (outward)
    v2, f2 = gallery.decimate(sphere.vertices, sphere.faces, 10**6)
    assert len(f2) == len(sphere.faces)


def _objects_root(tmp_path: Path) -> Path:
    root = tmp_path / "objects"
    for oid, mesh in (("ball-1", trimesh.creation.icosphere(2, 0.04)), ("cube-2", trimesh.creation.box((0.05,) * 3))):
        (root / oid).mkdir(parents=True)
        mesh.export(root / oid / "mesh.obj")
    return root


def test_gallery_from_table(tmp_path: Path) -> None:
    import pandas as pd
    import pyarrow as pa

    root = _objects_root(tmp_path)
    df = pd.DataFrame({
        "object_id": ["cube-2", "ball-1", "cube-2"],
        "q": [_pose(k).astype(np.float32) for k in range(3)],
        "lift_success": [True, True, False],
        "penetration_depth": [0.001, 0.010, 0.0],  # 10 mm: held by the simulator, gated out
        "q1": [0.02, 0.03, np.nan],
        "contact_count": [4, 3, 2],
    })
    cards = gallery.cards_from_table(df, root)
    assert [(c.object_id, c.rank, c.valid) for c in cards] == [("cube-2", 1, True), ("ball-1", 1, False),
                                                               ("cube-2", 2, False)]
    assert cards[1].verdicts == {"lift": True} and cards[1].metrics["penetration_depth_mm"] == pytest.approx(10)
    out = gallery.gallery_from_table(pa.Table.from_pandas(df.assign(valid=[False, True, None])), root,
                                     tmp_path / "t.html", limit=2)
    parsed = _parse(out.read_text())
    assert [(c["data-object-id"], c["data-status"]) for c in parsed.cards] == [("cube-2", "dropped"),
                                                                               ("ball-1", "held")]
    with pytest.raises(FileNotFoundError, match="nope-3"):
        gallery.cards_from_table(df.assign(object_id="nope-3"), root)
    with pytest.raises(ValueError, match="'q'"):
        gallery.cards_from_table(df.drop(columns="q"), root)


def test_viz_render_html_is_the_self_contained_gallery(tmp_path: Path) -> None:
    from dexlite_core import viz

    mesh = trimesh.creation.box(extents=(0.05, 0.05, 0.05))
    out = viz.render_html(mesh, np.stack([_pose(0), _pose(1)]), tmp_path / "grasp.html", object_id="box-1")
    text = out.read_text()
    assert [c["data-rank"] for c in _parse(text).cards] == ["1", "2"] and not re.search(r"https?://", text)
    one = viz.render_html(mesh, _pose(2), tmp_path / "one.html")
    assert one.read_text().count('class="grasp-card') == 1
    with pytest.raises(ValueError, match="28"):
        viz.render_html(mesh, np.zeros(27), tmp_path / "bad.html")


# ----------------------------------------------------------------------------- real browser


def _ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    msg = f"no headless browser on PATH ({', '.join(BROWSERS)})"
    if _ci():
        pytest.fail(f"{msg}: CI must have one (.ci/run installs Debian's chromium)")
    pytest.skip(msg)


def test_missing_browser_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must have one"):
        _browser()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        _browser()


def _chrome(tmp_path: Path, url: str, *args: str) -> str:
    cmd = [_browser(), *CHROME_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args, url]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, f"{cmd}: exit {r.returncode}\n{r.stderr[-2000:]}"
    return r.stdout


def _rendered(tmp_path: Path, url: str) -> _Cards:
    dom = _parse(_chrome(tmp_path, url, "--dump-dom"))
    assert "data-error" not in dom.body, dom.body["data-error"]  # a JS exception on the page
    assert dom.body.get("data-rendered") == "1"
    return dom


def test_browser_draws_every_card(page: Path, tmp_path: Path) -> None:
    dom = _rendered(tmp_path, page.as_uri())
    assert len(dom.cards) == len(STATUSES)
    assert [c["data-status"] for c in dom.cards] == STATUSES
    assert all("held" in c["class"].split() for c in dom.cards if c["data-status"] == "held")
    assert all(c["data-rendered"] == "1" for c in dom.cards)
    assert all(int(c["data-triangles"]) > 1000 for c in dom.cards)  # hand + object, not a few stray faces
    assert all(c["data-view"] == "0.0,0.0,1.000" for c in dom.cards)
    assert len({c["data-sig"] for c in dom.cards}) == len(dom.cards)  # four different pictures


def test_browser_rotate_and_zoom_redraw(page: Path, tmp_path: Path) -> None:
    plain = _rendered(tmp_path, page.as_uri())
    turned = _rendered(tmp_path, page.as_uri() + "#rotate=30&tilt=-15&zoom=1.5")
    assert [c["data-view"] for c in turned.cards] == ["30.0,-15.0,1.500"] * len(STATUSES)
    for a, b in zip(plain.cards, turned.cards, strict=True):
        assert b["data-rendered"] == "1" and int(b["data-triangles"]) > 1000
        assert a["data-sig"] != b["data-sig"]  # the projection changed


def test_browser_screenshot_shows_hand_and_object(page: Path, tmp_path: Path) -> None:
    from PIL import Image

    shot = tmp_path / "shot.png"
    _chrome(tmp_path, page.as_uri(), f"--screenshot={shot}", "--window-size=1300,800", "--hide-scrollbars")
    rgb = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    hand = (r > 60) & (g > 0.6 * r) & (g < 0.85 * r) & (b > 0.4 * r) & (b < 0.7 * r)  # shaded skin colour
    obj = (b > r + 40) & (b > g + 15)  # blue object over the light canvas
    border = (g > r + 60) & (g > b + 40)  # the held cards' green frame / badge
    # the legend swatches are 100 px each: the views must add thousands
    assert hand.sum() > 3000 and obj.sum() > 3000 and border.sum() > 500, (hand.sum(), obj.sum(), border.sum())
