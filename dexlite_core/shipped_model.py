"""The CVAE shipped inside the package (``dexlite grasp``'s default model) and its model card.

``dexlite_core/data/model/``:

- ``cvae.pt``: ``{"model": state dict in float16, "config": TrainConfig fields, "card": {...}}``; the
  weights are stored in half precision to keep the wheel small (1.4 M parameters: 2.8 MB instead of
  5.6), and :meth:`dexlite_core.sampling.GraspSampler.load` copies them into float32 parameters;
- ``card.json`` / ``card.md``: where the model comes from (the run's config, objects, grasps,
  steps) and how it does on objects it never saw (validation and test objects, both protocols,
  with n and 95% intervals), written by :func:`write_shipped` from the run's own artifacts.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import torch

from .atomic import atomic_write_bytes, atomic_write_json, atomic_write_text

MODEL_DIR = Path(__file__).resolve().parent / "data" / "model"
CHECKPOINT = "cvae.pt"
CARD_JSON = "card.json"
CARD_MD = "card.md"


class NoShippedModelError(FileNotFoundError):
    """The package holds no model (a checkout from before one was shipped)."""


def shipped_checkpoint(model_dir: Path = MODEL_DIR) -> Path:
    """Path of the shipped checkpoint; :class:`NoShippedModelError` naming it when absent."""
    path = model_dir / CHECKPOINT
    if not path.is_file():
        raise NoShippedModelError(f"no shipped model at {path}; pass --model CHECKPOINT or a run folder")
    return path


def read_card(model_dir: Path = MODEL_DIR) -> dict[str, Any]:
    """The shipped model's card (``card.json``); {} when there is none."""
    path = model_dir / CARD_JSON
    return json.loads(path.read_text()) if path.is_file() else {}


def compact_checkpoint(src: Path, card: dict[str, Any]) -> bytes:
    """A training checkpoint reduced to what sampling needs: float16 weights, the train config and
    the card (no optimiser state, no RNG states)."""
    ckpt = torch.load(src, map_location="cpu", weights_only=False)
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in ckpt["model"].items()}
    buf = io.BytesIO()
    torch.save({"model": state, "config": ckpt.get("config") or {}, "card": card}, buf)
    return buf.getvalue()


def write_shipped(src: Path, card: dict[str, Any], model_dir: Path = MODEL_DIR) -> Path:
    """Write the compact checkpoint of `src` and its card (JSON + Markdown) into `model_dir`."""
    model_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(model_dir / CHECKPOINT, compact_checkpoint(src, card))
    atomic_write_json(model_dir / CARD_JSON, card)
    atomic_write_text(model_dir / CARD_MD, card_markdown(card))
    return model_dir / CHECKPOINT


def _rate(entry: dict[str, Any] | None) -> str:
    if not entry or entry.get("n", 0) == 0 or entry.get("rate") is None:
        return "-"
    lo, hi = entry.get("ci95") or (None, None)
    ci = f" [{100 * lo:.1f}, {100 * hi:.1f}]" if lo is not None else ""
    return f"{100 * entry['rate']:.1f}%{ci} (n={entry['n']})"


def _plain(v: Any) -> str:
    """A card value on one Markdown line: a dict as ``key value; ...``."""
    if isinstance(v, dict):
        return "; ".join(f"{k} {_plain(x)}" for k, x in v.items())
    return str(v)


def card_markdown(card: dict[str, Any]) -> str:
    """The card as a short Markdown page: provenance, training, held-out figures."""
    lines = [f"# DexLite shipped model: {card.get('name', 'cvae')}", ""]
    for key, label in (("created", "Created"), ("commit", "Code commit"), ("command", "Made by"),
                       ("config_file", "Config")):
        if card.get(key):
            lines.append(f"- {label}: `{card[key]}`" if key in ("command", "commit", "config_file")
                         else f"- {label}: {card[key]}")
    data = card.get("training_data", {})
    if data:
        lines += ["", "## Training data", ""]
        lines += [f"- {k.replace('_', ' ')}: {_plain(v)}" for k, v in data.items()]
    train = card.get("training", {})
    if train:
        lines += ["", "## Training", ""]
        lines += [f"- {k.replace('_', ' ')}: {_plain(v)}" for k, v in train.items()]
    figures = card.get("figures", {})
    if figures:
        lines += ["", "## Held-out figures (objects never trained on)", "",
                  "Post-optimised samples (the write-up's 200 steps), physically valid success (protocol "
                  "passed, penetration <= 5 mm), 95% Wilson intervals.", "",
                  "| objects | source | n objects | lift | dexgraspbench | six-direction |",
                  "|---|---|---|---|---|---|"]
        for split, by_source in figures.items():
            for source, fig in by_source.items():
                rates = fig.get("rates", {})
                lines.append(f"| {split} | {source} | {fig.get('n_objects', '-')} | {_rate(rates.get('lift'))} | "
                             f"{_rate(rates.get('dexgraspbench'))} | {_rate(rates.get('six_direction'))} |")
    if card.get("notes"):
        lines += ["", "## Notes", "", *[f"- {n}" for n in card["notes"]]]
    return "\n".join(lines) + "\n"
