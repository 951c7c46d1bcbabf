"""Attention modules, one file each, and a registry that builds them by name.

Every module maps (B, C, H, W) to (B, C, H, W), takes ``channels`` first and then its paper's
hyper-parameters with the paper's defaults, and passes its attention weights through a
submodule named ``gate`` so that one forward hook can record them
(see :class:`attn_course.models.AttentionRecorder`). Selective Kernel ("sk") is a convolution
rather than a gate: in :class:`attn_course.models.ResNet` it replaces conv2 (``position="conv2"``).
"""

from .cbam import CBAM, ChannelAttention, SpatialAttention
from .coord import CoordinateAttention, CoordinateGate
from .eca import EfficientChannelAttention, eca_kernel_size
from .gather_excite import GatherExcite
from .gc import GlobalContext
from .non_local import NonLocal
from .psa import PointwiseSpatialAttention, psa_mask
from .simam import SimAM
from .sk import SelectiveKernel
from .squeeze_excite import SqueezeExcite

ATTENTION = {
    "se": SqueezeExcite,
    "psa": PointwiseSpatialAttention,
    "cbam": CBAM,
    "eca": EfficientChannelAttention,
    "ge": GatherExcite,
    "simam": SimAM,
    "coord": CoordinateAttention,
    "sk": SelectiveKernel,
    "nonlocal": NonLocal,
    "gc": GlobalContext,
}


def create_attention(name, channels, **kwargs):
    """Build the attention module registered as ``name`` for ``channels`` channels.

    Keyword arguments go to the module's constructor, e.g. ``create_attention("se", 64, reduction=4)``.
    """
    if name not in ATTENTION:
        raise ValueError(
            f"Unknown attention {name!r}. Valid names: {', '.join(sorted(ATTENTION))}."
        )
    return ATTENTION[name](channels, **kwargs)


__all__ = ["ATTENTION", "create_attention", "SqueezeExcite", "CBAM", "ChannelAttention", "SpatialAttention",
           "PointwiseSpatialAttention", "psa_mask", "EfficientChannelAttention", "eca_kernel_size",
           "GatherExcite", "SimAM", "CoordinateAttention", "CoordinateGate", "SelectiveKernel",
           "NonLocal", "GlobalContext"]
