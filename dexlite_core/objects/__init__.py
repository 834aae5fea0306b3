"""Object stage: ingest meshes into object folders (docs/CONTRACTS.md "Object folder") and load them.

Public API::

    ingest_mesh(source, out_root, cfg) -> ObjectAsset
    ingest_many(sources, out_root, cfg, workers=1) -> IngestReport
    load_object(path) -> ObjectAsset
    list_objects(root) -> list[Path]
    bundled_sources(n_random=0, include_primitives=True, include_real=True) -> list[ObjectSource]
    SDFGrid.query(x (..., 3)) -> (dist (...), normal (..., 3))
"""

from dexlite_core.objects.asset import ObjectAsset, is_complete, list_objects, load_object
from dexlite_core.objects.bundled import bundled_sources, primitive_sources, real_sources, tiny_sources
from dexlite_core.objects.ingest import (
    IngestFailure,
    IngestReport,
    IngestResult,
    ingest_many,
    ingest_mesh,
    object_id_for,
)
from dexlite_core.objects.sdf import SDFGrid, compute_sdf, winding_number
from dexlite_core.objects.source import MeshError, ObjectLoadError, ObjectSource

__all__ = [
    "IngestFailure",
    "IngestReport",
    "IngestResult",
    "MeshError",
    "ObjectAsset",
    "ObjectLoadError",
    "ObjectSource",
    "SDFGrid",
    "bundled_sources",
    "compute_sdf",
    "ingest_many",
    "ingest_mesh",
    "is_complete",
    "list_objects",
    "load_object",
    "object_id_for",
    "primitive_sources",
    "real_sources",
    "tiny_sources",
    "winding_number",
]
