"""Argument and input checks shared by every attention module, with messages that say how to fix."""

import numbers

import torch


def is_int(value):
    """An integer, Python's or NumPy's (``np.int64(16)``), but not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_bool(value, name, module_name):
    """Raise a TypeError unless ``value`` is True or False (a string such as "no" would be truthy)."""
    if not isinstance(value, bool):
        raise TypeError(f"{module_name}: {name} must be True or False, got {value!r}.")


def check_channels(channels, module_name):
    """Return ``channels`` as an int; raise a ValueError unless it is a positive integer."""
    if not is_int(channels) or channels < 1:
        raise ValueError(
            f"{module_name}: channels must be a positive int (the C of a (B, C, H, W) input), "
            f"got {channels!r}."
        )
    return int(channels)


def check_reduction(channels, reduction, module_name):
    """Return ``reduction`` as an int; raise a ValueError unless ``1 <= reduction <= channels``: the
    hidden layer keeps >= 1 unit."""
    if not is_int(reduction) or reduction < 1:
        raise ValueError(f"{module_name}: reduction must be a positive int, got {reduction!r}.")
    if reduction > channels:
        raise ValueError(
            f"{module_name}: reduction={reduction} is larger than channels={channels}, which leaves "
            f"channels // reduction = 0 hidden units. Use a reduction of at most {channels} "
            f"(the papers use 16 on 64 or more channels; small networks often use 4)."
        )
    return int(reduction)


def check_input(x, channels, module_name, weight=None):
    """Raise unless ``x`` is a floating-point (B, C, H, W) tensor with the module's C (and, given one
    of the module's ``weight`` tensors, its dtype).

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
    if not x.is_floating_point():
        raise TypeError(f"{module_name} expects a floating-point tensor, got {x.dtype}: convert it with x.float().")
    if weight is not None and x.dtype != weight.dtype and not torch.is_autocast_enabled(x.device.type):
        raise TypeError(
            f"{module_name} has {weight.dtype} weights but the input is {x.dtype}: convert the input with "
            f"x.to({weight.dtype}), or the module with module.to({x.dtype})."
        )
