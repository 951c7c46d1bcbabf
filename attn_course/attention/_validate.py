"""Argument and input checks shared by every attention module, with messages that say how to fix."""

import torch


def check_channels(channels, module_name):
    """Raise a ValueError unless ``channels`` is a positive int."""
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ValueError(
            f"{module_name}: channels must be a positive int (the C of a (B, C, H, W) input), "
            f"got {channels!r}."
        )


def check_reduction(channels, reduction, module_name):
    """Raise a ValueError unless ``1 <= reduction <= channels``: the hidden layer keeps >= 1 unit."""
    if isinstance(reduction, bool) or not isinstance(reduction, int) or reduction < 1:
        raise ValueError(f"{module_name}: reduction must be a positive int, got {reduction!r}.")
    if reduction > channels:
        raise ValueError(
            f"{module_name}: reduction={reduction} is larger than channels={channels}, which leaves "
            f"channels // reduction = 0 hidden units. Use a reduction of at most {channels} "
            f"(the papers use 16 on 64 or more channels; small networks often use 4)."
        )


def check_input(x, channels, module_name):
    """Raise a ValueError unless ``x`` is a (B, C, H, W) tensor with the module's C.

    ``channels=None`` accepts any C, for modules with no channel-dependent weights.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{module_name} expects a torch.Tensor, got {type(x).__name__}.")
    if x.dim() != 4:
        raise ValueError(
            f"{module_name} expects a 4-D tensor (B, C, H, W), got {x.dim()}-D with shape "
            f"{tuple(x.shape)}. Add a batch dimension with x.unsqueeze(0) for a single image."
        )
    if channels is not None and x.shape[1] != channels:
        raise ValueError(
            f"{module_name} was built for {channels} channels but the input has {x.shape[1]} "
            f"(shape {tuple(x.shape)}). Build it with channels={x.shape[1]}, or feed it the "
            f"feature map it was made for."
        )
