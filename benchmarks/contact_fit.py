"""Contacts for grasps stored without them: each link's nearest candidate vs the fitted link subset.

    .venv/bin/python benchmarks/contact_fit.py [DATASET.parquet --objects DIR]

Round 2 of ``dexlite run --rounds 2`` trains on seed grasps (with the optimiser's contacts) and on
fed-back CVAE expansions (no contacts). Training scores decoded poses against contacts of their
target grasp, so the filled-in contacts must explain a grasp that held. For every dataset grasp
this prints mean E_fc and E_dis, per source, of: the stored contacts (seed rows only), each link's
candidate nearest the surface (:func:`contact_indices_for`, the former fill) and the fitted subset
(:func:`fitted_contact_indices`, the current fill), and the time the fit takes. Without arguments
it reads the ``dataset@round2`` and ``objects`` artifacts of runs/default/stages.json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from _runs import last_run

from dexlite_core.config import EnergyConfig
from dexlite_core.dataset import table_q
from dexlite_core.energy import grasp_energy
from dexlite_core.objects import load_object
from dexlite_core.synthesis import contact_indices_for, fitted_contact_indices, hand_on, object_field
from storage.parquet import read_grasps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", nargs="?", type=Path, help="grasp Parquet (object_id, q, source, contact_idx)")
    ap.add_argument("--objects", type=Path, help="object folders (default: runs/default's objects artifact)")
    args = ap.parse_args()
    table = read_grasps(args.dataset or last_run("dataset@round2") / "grasps.parquet")
    objects = args.objects or last_run("objects") / "objects"
    torch.set_num_threads(2)
    cfg, hand = EnergyConfig(), hand_on("cpu")
    ids = np.asarray(table.column("object_id").to_pylist())
    source = np.asarray(table.column("source").to_pylist())
    stored = table.column("contact_idx").to_pylist()
    q_all = torch.as_tensor(table_q(table))
    rows: dict[str, dict[str, list[np.ndarray]]] = {}
    fit_seconds = 0.0
    for oid in np.unique(ids):
        sel = np.flatnonzero(ids == oid)
        field = object_field(load_object(objects / oid), torch.device("cpu"))
        q = q_all[sel]
        t0 = time.perf_counter()
        fitted = fitted_contact_indices(hand, field, q, cfg)
        fit_seconds += time.perf_counter() - t0
        choices = {"nearest per link": contact_indices_for(hand, field, q, cfg.n_contacts), "fitted": fitted}
        have = np.array([stored[i] is not None for i in sel])
        if have.any():
            idx = fitted.clone()
            idx[torch.as_tensor(have)] = torch.as_tensor([stored[i] for i in sel[have]], dtype=torch.long)
            choices["stored"] = idx
        for name, idx in choices.items():
            with torch.no_grad():
                e = grasp_energy(hand, field, q, idx, cfg)
            for src in np.unique(source[sel]):
                m = source[sel] == src
                if name == "stored" and not have[m].all():
                    continue
                acc = rows.setdefault(f"{src:>8} {name:>16}", {"E_fc": [], "E_dis": []})
                acc["E_fc"].append(e.E_fc.numpy()[m])
                acc["E_dis"].append(e.E_dis.numpy()[m])
    print(f"{len(q_all)} grasps over {len(np.unique(ids))} objects; fit: {fit_seconds:.1f} s "
          f"({1e3 * fit_seconds / len(q_all):.2f} ms per grasp, CPU)")
    print(f"{'source':>8} {'contacts':>16} {'n':>5} {'E_fc':>7} {'E_dis [m]':>9}")
    for key in sorted(rows):
        fc, dis = np.concatenate(rows[key]["E_fc"]), np.concatenate(rows[key]["E_dis"])
        print(f"{key} {len(fc):>5} {fc.mean():>7.3f} {dis.mean():>9.4f}")


if __name__ == "__main__":
    main()
