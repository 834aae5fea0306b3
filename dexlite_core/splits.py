"""Train / validation / test split by object, never by scale, and the nested training subsets of the
scaling curve.

Every object instance belongs to a *group*: the object it was made from (``meta.json``'s ``group``;
all scales of one mesh share it), or its own id when the meta names none. A group's place depends on
one number, ``u(group) = sha256("0:<group>")[:12] / 16**12`` in [0, 1) (the key of the former seed-0
split, so the validation objects of existing runs are unchanged):

    u < val_fraction                                  -> "val"
    val_fraction <= u < val_fraction + test_fraction  -> "test"
    otherwise                                         -> "train"

No seed enters it, so every model (any ``train.seed``, any ``train.max_objects``) is scored on the same
validation and test objects, and adding objects never moves an existing one across splits. With very
few groups the hash alone may leave a split empty; then (and only then) a fallback moves the group
nearest to it (see :func:`assign_splits`), so that there is always at least one training object, a
validation object from two groups on and a test object from three on. Stability under adding
objects holds from the point where each requested split has a member by the hash alone.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

SPLITS = ("train", "val", "test")


def unit_hash(key: str, salt: str = "0") -> float:
    """``sha256("<salt>:<key>")`` as a number in [0, 1) (48 bits): stable across runs and machines."""
    return int(hashlib.sha256(f"{salt}:{key}".encode()).hexdigest()[:12], 16) / 16**12


def group_of(object_id: str, groups: Mapping[str, str | None] | None) -> str:
    """The group of `object_id` in `groups` (missing or None: the id itself)."""
    g = None if groups is None else groups.get(object_id)
    return object_id if g is None or g == "" else str(g)


def read_groups(objects_root: Path, object_ids: Iterable[str]) -> dict[str, str]:
    """Object id -> group from ``<objects_root>/<id>/meta.json``: its ``group``, else its ``name`` (a
    folder from before scales, as :attr:`ObjectAsset.group` reads it), else the id (no meta file). A
    meta.json that is not JSON is a ValueError naming the file."""
    out: dict[str, str] = {}
    for oid in object_ids:
        path = Path(objects_root) / oid / "meta.json"
        try:
            meta = json.loads(path.read_text())
        except FileNotFoundError:
            meta = {}
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path}: not a JSON object meta file ({e})") from e
        group = (meta.get("group") or meta.get("name")) if isinstance(meta, dict) else None
        out[oid] = str(group) if group else oid
    return out


def assign_splits(
    object_ids: Iterable[str],
    groups: Mapping[str, str | None] | None = None,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
) -> dict[str, list[str]]:
    """Split object ids into ``{"train": [...], "val": [...], "test": [...]}`` (each sorted; every id in
    exactly one) by the hash of each id's group (module docstring): instances of one group always
    share a split, and no seed is involved.

    Fallbacks for few groups, applied in order: (1) fewer than two groups: all train; (2) no train
    group: the held-out group of largest ``u`` trains; (3) ``val_fraction > 0`` and no validation
    group: the training group of smallest ``u`` (while two or more train), else the test group of
    smallest ``u``, validates; (4) ``test_fraction > 0``, no test group and two or more training groups:
    the training group of smallest ``u`` is tested.
    """
    if not (0.0 <= val_fraction <= 1.0 and 0.0 <= test_fraction <= 1.0 and val_fraction + test_fraction <= 1.0):
        raise ValueError(f"split fractions must be in [0, 1] with val + test <= 1 "
                         f"(val_fraction={val_fraction}, test_fraction={test_fraction})")
    ids = sorted(set(object_ids))
    members: dict[str, list[str]] = {}
    for oid in ids:
        members.setdefault(group_of(oid, groups), []).append(oid)
    u = {g: unit_hash(g) for g in members}
    place: dict[str, str] = {}
    for g, x in u.items():
        place[g] = "val" if x < val_fraction else "test" if x < val_fraction + test_fraction else "train"

    def of(split: str) -> list[str]:
        return sorted((g for g, s in place.items() if s == split), key=lambda g: (u[g], g))

    if len(members) < 2:
        place = dict.fromkeys(members, "train")
    else:
        if not of("train"):
            place[max(members, key=lambda g: (u[g], g))] = "train"
        if val_fraction > 0 and not of("val"):
            train = of("train")
            source = train if len(train) >= 2 else of("test")
            if source:
                place[source[0]] = "val"
        if test_fraction > 0 and not of("test") and len(of("train")) >= 2:
            place[of("train")[0]] = "test"
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    for g, s in place.items():
        out[s].extend(members[g])
    return {s: sorted(v) for s, v in out.items()}


def first_objects(object_ids: Sequence[str], groups: Mapping[str, str | None] | None, n: int) -> list[str]:
    """The instances of the first `n` groups of `object_ids` in a stable hash order of the groups
    (``unit_hash(group, "order")``, independent of the split's hash and of every seed), sorted; every
    id for ``n <= 0``. Nested: the first 14 groups are among the first 100, those among the first 300,
    whatever other objects the list holds (the scaling curve's training sets)."""
    ids = sorted(set(object_ids))
    if n <= 0:
        return ids
    by_group: dict[str, list[str]] = {}
    for oid in ids:
        by_group.setdefault(group_of(oid, groups), []).append(oid)
    order = sorted(by_group, key=lambda g: (unit_hash(g, "order"), g))
    return sorted(oid for g in order[:n] for oid in by_group[g])
