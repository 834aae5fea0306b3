"""Cache keys: a stage's key hashes the *content* of its upstream artifacts (their manifests' file
hashes; run records and pictures excluded: :func:`is_volatile`), the config sections it reads, extra
file inputs and its code version (:mod:`dag.codehash`). A stage whose upstream was rebuilt with
identical content is therefore not rerun (early cut-off)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dag.codehash import code_hash
from dag.spec import StageSpec, input_names
from storage.hashing import content_key, hash_json

ITEMS_SUFFIX = ".items"  # store stage of per-item artifacts: ``seed.items/<item key>``
ITEMS_FILE = "items.json"  # in a per-item stage's artifact: item -> item key (its content identity)
# Never part of an artifact's content digest: run records and pictures, which no stage reads as input
VOLATILE_FILES = frozenset({"summary.json", "timing.json", "run.json"})
VOLATILE_SUFFIXES = (".png", ".html", ".log")


def is_volatile(relpath: str) -> bool:
    """A file that does not count as an artifact's content (see :data:`VOLATILE_FILES`), at any depth
    (a per-object folder's ``timing.json`` too)."""
    return relpath.rsplit("/", 1)[-1] in VOLATILE_FILES or relpath.endswith(VOLATILE_SUFFIXES)


def config_part(cfg: Any, spec: StageSpec) -> dict[str, Any]:
    """The config sections a stage reads (recorded in its manifest)."""
    d = cfg.to_dict()
    return {s: d[s] for s in spec.config}


def stage_key(spec: StageSpec, cfg: Any, upstream_digests: Mapping[str, str]) -> str:
    """Cache key of a stage from its inputs' content digests (input name -> digest), config and code."""
    missing = [d for d in spec.deps if d not in upstream_digests]
    if missing:
        raise KeyError(f"stage {spec.name!r}: no content digest for upstream {missing}")
    inputs = {d: upstream_digests[d] for d in input_names(spec, upstream_digests)}
    if spec.extra_inputs is not None:
        inputs.update({f"file:{k}": v for k, v in spec.extra_inputs(cfg).items()})
    sections = cfg.digest(*spec.config) if spec.config else ""
    return content_key(inputs, {"sections": list(spec.config), "digest": sections}, code_hash(spec))


def artifact_digest(store: Any, stage: str, key: str) -> str:
    """Content digest of a committed artifact: its manifest's file hashes, volatile files excluded."""
    files = store.manifest(stage, key)["files"]
    return hash_json({rel: f["sha256"] for rel, f in files.items() if not is_volatile(rel)})[:20]


def items_stage(stage: str) -> str:
    """Store stage name of a stage's per-item artifacts."""
    return stage + ITEMS_SUFFIX


def item_keys(spec: StageSpec, cfg: Any, items: list[str], digests: list[str]) -> list[str]:
    """Cache key of each item of a per-item stage (``Shards.item_inputs``): the item, the digest of
    what it reads, the item's config sections and the stage's code. Unlike the stage key it does not
    depend on the other items, so a new object leaves every other object's key unchanged."""
    assert len(items) == len(digests), "one digest per item"
    sections = spec.item_sections
    conf = {"sections": list(sections), "digest": cfg.digest(*sections) if sections else ""}
    code = code_hash(spec)
    return [content_key({"stage": spec.name, "item": item, "input": d}, conf, code)
            for item, d in zip(items, digests, strict=True)]
