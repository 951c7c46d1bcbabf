"""Attention modules, one file each, and a registry that builds them by name.

Every module maps (B, C, H, W) to (B, C, H, W), takes ``channels`` first and then its paper's
hyper-parameters with the paper's defaults, and passes its attention weights through a
submodule named ``gate`` so that one forward hook can record them
(see :class:`attn_course.models.AttentionRecorder`).
"""

from .squeeze_excite import SqueezeExcite

ATTENTION = {
    "se": SqueezeExcite,
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


__all__ = ["ATTENTION", "create_attention", "SqueezeExcite"]
