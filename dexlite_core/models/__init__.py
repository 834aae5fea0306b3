"""Learning models: PointNet object encoder and the grasp CVAE (plain torch, no Prefect).

See :mod:`.pointnet`, :mod:`.cvae` (architecture, condition, normalisation, associated point) and
:mod:`.losses` (reconstruction, KL, weighted total with the energy terms).
"""

from .cvae import (
    LATENT_DIM,
    PALM_CENTRE,
    POSE_DIM,
    GraspCVAE,
    PoseNormalizer,
    associated_point_index,
    palm_centre,
)
from .losses import kl_divergence, reconstruction_loss, total_loss
from .pointnet import FEATURE_DIM, POINTNET_PARAMS, PointNet, gather_points, nearest_point_index

__all__ = [
    "FEATURE_DIM",
    "LATENT_DIM",
    "PALM_CENTRE",
    "POINTNET_PARAMS",
    "POSE_DIM",
    "GraspCVAE",
    "PointNet",
    "PoseNormalizer",
    "associated_point_index",
    "gather_points",
    "kl_divergence",
    "nearest_point_index",
    "palm_centre",
    "reconstruction_loss",
    "total_loss",
]
