"""A small ResNet with an attention slot in every residual block, and a recorder for the gates.

The slot sits where SE-ResNet puts SE (Hu et al. 2018, Fig. 3): after the last BatchNorm of the
residual branch, before the addition with the shortcut. With no attention the slot is an
``nn.Identity`` and the network is a plain ResNet (He et al., "Deep Residual Learning for Image
Recognition", CVPR 2016, https://arxiv.org/abs/1512.03385). Selective Kernel is a convolution, not
a gate: ``attention="sk", position="conv2"`` puts it in the slot before bn2 and removes conv2.
"""

import numbers
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from .attention import SelectiveKernel, create_attention


def make_attention(attention, channels, attention_kwargs, owner="the model"):
    """Resolve the ``attention`` argument: None, a registered name, or a callable ``f(channels)``.

    Keyword arguments with no attention to take them raise a TypeError (a misspelt ``attention=``
    would otherwise build a model without attention), and so does a module instance: every slot
    needs a module of its own, built for its channels.
    """
    if attention is None:
        if attention_kwargs:
            raise TypeError(
                f"{owner} got {', '.join(attention_kwargs)} but no attention, so they would be ignored. Name the "
                f"attention (attention='se', reduction=4), check the spelling of 'attention', or drop them."
            )
        return nn.Identity()
    if isinstance(attention, nn.Module):
        raise TypeError(
            f"attention must be a registered name such as 'se' or a callable taking channels, got a "
            f"{type(attention).__name__} module: pass its name or its class ({type(attention).__name__}), "
            f"so that each slot gets a module of its own built for its channels."
        )
    if isinstance(attention, str):
        return create_attention(attention, channels, **attention_kwargs)
    if callable(attention):
        return attention(channels, **attention_kwargs)
    raise TypeError(
        f"attention must be None, a registered name such as 'se', or a callable taking channels; "
        f"got {type(attention).__name__}."
    )


def check_stages(stages, n_stages):
    """The set of stages (counted from 1) named by ``stages``; None names all ``n_stages``."""
    if stages is None:
        return set(range(1, n_stages + 1))
    valid = list(range(1, n_stages + 1))
    if isinstance(stages, (int, str)) or not hasattr(stages, "__iter__"):
        raise ValueError(f"stages must be a tuple of stage numbers from {valid}, such as (2, 3); got {stages!r}.")
    stages = list(stages)
    bad = [s for s in stages if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s not in valid]
    if bad or not stages or len(set(stages)) != len(stages):
        raise ValueError(f"stages must name each stage at most once, from {valid} (counted from 1); got "
                         f"{tuple(stages)!r}. Use None for every stage.")
    return {int(s) for s in stages}


POSITIONS = ("after_bn", "before_bn", "after_block", "conv2")


def is_selective_kernel(attention):
    """Whether ``attention`` names Selective Kernel, a convolution that replaces conv2 rather than a gate."""
    return (isinstance(attention, str) and attention == "sk") or attention is SelectiveKernel


def check_position(position, attention, owner):
    """The attention's place in a residual block: ``"after_bn"`` (None means it), ``"before_bn"``,
    ``"after_block"`` (on the block's output, after the addition and ReLU), or ``"conv2"`` (Selective
    Kernel only, in conv2's place).

    A position with no attention to place raises a TypeError, as other attention arguments do.
    """
    if position is None:
        if is_selective_kernel(attention):
            raise ValueError(
                f"{owner}: Selective Kernel ('sk') is a convolution, not a gate after a BatchNorm: pass "
                f"position='conv2' to put it in conv2's place (ResNet(attention='sk', position='conv2', groups=2))."
            )
        return "after_bn"
    if attention is None:
        raise TypeError(
            f"{owner} got position but no attention, so it would be ignored. Name the attention "
            f"(attention='simam', position='before_bn'), check the spelling of 'attention', or drop it."
        )
    if not isinstance(position, str) or position not in POSITIONS:
        raise ValueError(
            f"{owner}: position must be 'after_bn' (after the branch's last BatchNorm, as in SE-ResNet; the "
            f"default) or 'before_bn' (after conv2, before its BatchNorm, as in the official SimAM ResNets), "
            f"'after_block' (on the block's output, after the addition and ReLU, where the official non-local "
            f"networks insert their blocks), or 'conv2' for attention='sk' (Selective Kernel in conv2's place); "
            f"got {position!r}."
        )
    if (position == "conv2") != is_selective_kernel(attention):
        raise ValueError(
            f"{owner}: position='conv2' is for Selective Kernel (attention='sk') only, which replaces conv2, "
            f"and 'sk' goes only there; got attention={attention!r} with position={position!r}. Use "
            f"position='conv2' with 'sk', and 'after_bn', 'before_bn' or 'after_block' with the others."
        )
    return position


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, then attention, then + shortcut, then ReLU.

    ``position="before_bn"`` moves the attention between conv2 and its BatchNorm (the official
    SimAM ResNets' place): conv3x3-BN-ReLU-conv3x3, attention, BN, + shortcut, ReLU. The default
    (None, i.e. ``"after_bn"``) is SE-ResNet's place, after the BatchNorm. ``position="after_block"``
    applies the attention to the block's output, after the addition and the ReLU: where the official
    non-local networks insert a non-local block between residual blocks (it has its own residual
    connection).

    ``attention="sk", position="conv2"``: a :class:`SelectiveKernel` convolution replaces conv2
    (conv3x3-BN-ReLU-SK-BN, + shortcut, ReLU). It lives in the slot, ``self.attention``, so that its
    gate is recorded as every other one (``...attention.gate``), and conv2 becomes an ``nn.Identity``;
    the forward pass is the ``"before_bn"`` one, bn2(attention(conv2(out))). bn2 is kept
    although SK has a BN and ReLU in each branch: the residual branch still ends with a BatchNorm,
    as in the official SKNet block (1x1 conv, SK conv, 1x1 conv, each followed by BN).
    """

    def __init__(self, in_channels, out_channels, stride=1, attention=None, attention_kwargs=None, position=None):
        super().__init__()
        self.position = check_position(position, attention, "BasicBlock")
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        if self.position == "conv2":
            if "stride" in (attention_kwargs or {}):
                raise TypeError("BasicBlock: an SK conv in conv2's place keeps conv2's stride 1 (conv1 strides): "
                                "drop 'stride' from the attention's arguments.")
            self.conv2 = nn.Identity()  # the SK conv in the slot is the block's second convolution
        else:
            self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.attention = make_attention(attention, out_channels, attention_kwargs or {}, "BasicBlock")
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
            )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        if self.position in ("before_bn", "conv2"):  # conv2: conv2 is an Identity and the slot holds the SK conv
            out = self.bn2(self.attention(self.conv2(out)))  # the official SimAM ResNets' place
        else:
            out = self.bn2(self.conv2(out))
            if self.position == "after_bn":
                out = self.attention(out)  # the attention slot
        out = self.relu(out + self.shortcut(x))
        return self.attention(out) if self.position == "after_block" else out


class ResNet(nn.Module):
    """A small ResNet for 32 x 32 inputs: a 3x3 stem and one stage per entry of ``widths``.

    Stage ``i`` has ``depths[i]`` :class:`BasicBlock` s; every stage after the first halves the
    resolution. The defaults give 3 stages at 32, 16 and 8 pixels, 77,754 parameters.

    Args:
        attention: None (plain ResNet), a name registered in :mod:`attn_course.attention`, or a
            callable ``f(channels, **attention_kwargs)`` returning a module.
        widths: channels of each stage.
        depths: residual blocks in each stage.
        in_channels: image channels.
        num_classes: outputs of the classifier.
        stages: which stages hold attention, counted from 1 (``(3,)``: the last of three); None
            (the default) puts it in every stage. Stages without it keep an ``nn.Identity`` slot.
        position: where the attention sits in each block: ``"after_bn"`` (the default, None: after
            the branch's last BatchNorm, as in SE-ResNet), ``"before_bn"`` (after conv2, before its
            BatchNorm, as in the official SimAM ResNets) or ``"after_block"`` (on the block's output, as
            the official non-local networks place their blocks); ``"conv2"`` for ``attention="sk"`` only (a
            Selective Kernel convolution in conv2's place, bn2 kept). See :class:`BasicBlock`.
        **attention_kwargs: passed to every attention module, e.g. ``reduction=4``.
    """

    def __init__(self, attention=None, widths=(16, 32, 64), depths=(1, 1, 1), in_channels=1,
                 num_classes=10, stages=None, position=None, **attention_kwargs):
        super().__init__()
        if len(widths) != len(depths) or not widths:
            raise ValueError(f"widths {widths} and depths {depths} need the same, non-zero length.")
        sizes = {"widths": widths, "depths": depths, "in_channels": [in_channels], "num_classes": [num_classes]}
        for name, values in sizes.items():
            if any(isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1 for v in values):
                raise ValueError(f"ResNet: {name} must be positive ints, got {values!r}.")
        if attention is None and (attention_kwargs or stages is not None or position is not None):
            given = ", ".join(list(attention_kwargs) + [name for name, value in (("stages", stages),
                              ("position", position)) if value is not None])
            raise TypeError(
                f"ResNet got {given} but no attention, so they would be ignored. Name the attention "
                f"(ResNet(attention='se', reduction=4)), check the spelling of 'attention', or drop them."
            )
        with_attention = check_stages(stages, len(widths))
        check_position(position, attention, "ResNet")
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)
        )
        stages, channels = [], widths[0]
        for i, (width, depth) in enumerate(zip(widths, depths)):
            blocks = []
            for j in range(depth):
                stride = 2 if (i > 0 and j == 0) else 1
                slot = attention if i + 1 in with_attention else None
                blocks.append(BasicBlock(channels, width, stride, slot, attention_kwargs if slot else None,
                                         position if slot else None))
                channels = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        self.in_channels = in_channels

    def features(self, x):
        """The last stage's feature map, (B, widths[-1], H / 2**(stages-1), W / 2**(stages-1))."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"ResNet expects images of shape (B, {self.in_channels}, H, W), got {tuple(x.shape)}."
            )
        if not x.is_floating_point():
            raise TypeError(f"ResNet expects floating-point images, got {x.dtype}: convert them with x.float().")
        return self.stages(self.stem(x))

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


class AttentionRecorder:
    """Record the output of every submodule named ``gate`` (or another name) in a forward pass.

    Use it as a context manager; ``recorder.records`` maps each module's qualified name to the
    list of tensors it produced (detached, on the CPU), one per forward call::

        with AttentionRecorder(model) as recorder:
            model(images)
        gates = recorder.stacked()  # {"stages.0.0.attention.gate": (N, C), ...}
    """

    def __init__(self, model, names=("gate",)):
        if not isinstance(model, nn.Module):
            raise TypeError(f"AttentionRecorder needs an nn.Module, got {type(model).__name__}.")
        names = (names,) if isinstance(names, str) else tuple(names)  # "gate" is one name, not 4 letters
        if not names or not all(isinstance(name, str) and name for name in names):
            raise ValueError(f"names must be submodule names such as 'gate' or ('gate', 'fc1'), got {names!r}.")
        self.modules = {
            name: module for name, module in model.named_modules() if name.rsplit(".", 1)[-1] in names
        }
        if not self.modules:
            raise ValueError(
                f"The model has no submodule named {' or '.join(names)}: is its attention slot empty?"
            )
        self.records = {name: [] for name in self.modules}
        self._handles = []

    def __enter__(self):
        if self._handles:
            raise RuntimeError("this AttentionRecorder is already recording (a with-block inside its own with-block "
                               "would record every pass twice): use one with-block, or a second recorder.")
        for name, module in self.modules.items():
            hook = self._hook(name)
            self._handles.append(module.register_forward_hook(hook))
        return self

    def _hook(self, name):
        def hook(module, inputs, output):
            if not isinstance(output, torch.Tensor):
                raise TypeError(f"AttentionRecorder records tensors, but {name} returned a {type(output).__name__}: "
                                f"record a submodule that returns one tensor (its gate).")
            self.records[name].append(output.detach().cpu())
        return hook

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def stacked(self):
        """Concatenate each module's records along the batch dimension."""
        return {name: torch.cat(tensors) for name, tensors in self.records.items() if tensors}


def model_device(model):
    """The device of a model's first parameter or buffer; the CPU for a module with neither
    (a parameter-free attention such as GE-theta-minus)."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


@contextmanager
def eval_mode(model):
    """Put ``model`` in eval mode for a block and restore its previous mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


class BatchNormWithAttention(nn.BatchNorm2d):
    """A BatchNorm2d followed by an attention module: the slot :func:`add_attention` puts into
    torchvision's residual blocks. Being a BatchNorm2d, it keeps the BN's parameter names, so the
    block's ``state_dict`` keys are unchanged and ``<bn>.attention.*`` is all that is new."""

    def __init__(self, batch_norm, attention):
        floats = [t for t in batch_norm.state_dict().values() if t.is_floating_point()]
        device, dtype = (floats[0].device, floats[0].dtype) if floats else (torch.device("cpu"), None)
        super().__init__(batch_norm.num_features, eps=batch_norm.eps, momentum=batch_norm.momentum,
                         affine=batch_norm.affine, track_running_stats=batch_norm.track_running_stats)
        self.load_state_dict(batch_norm.state_dict())
        self.attention = attention
        self.train(batch_norm.training)
        self.to(device=device, dtype=dtype)  # stay where the BN was, in its dtype, the attention too

    def forward(self, x):
        return self.attention(super().forward(x))  # attention after the BN, before the addition


def add_attention(model, attention, stages=None, **attention_kwargs):
    """Put an attention module into every residual block of a torchvision ResNet (or of some stages), in place.

    As in SE-ResNet (Hu et al. 2018, Fig. 3), the module acts on the residual branch after its
    last BatchNorm (``bn2`` of a ``BasicBlock``, ``bn3`` of a ``Bottleneck``) and before the
    addition with the shortcut. That BatchNorm becomes a :class:`BatchNormWithAttention`, so the
    gates of the first block are recorded at ``model.layer1[0].bn3.attention.gate`` (``bn2`` for
    ResNet-18/34) and pretrained weights still load by name (``strict=False``: the attention is new).

    Args:
        model: a ``torchvision.models.ResNet`` (e.g. ``resnet50(weights=None)``).
        attention: a name registered in :mod:`attn_course.attention`, or a callable
            ``f(channels, **attention_kwargs)`` returning a module.
        stages: which stages receive attention, integers 1 to 4 naming ``layer1`` to ``layer4``, each
            at most once; None (the default) means all four. GCNet's "c3-c5" of ResNet-50 are
            ``stages=(2, 3, 4)``. Blocks of other stages are left as they are, so a second call may
            put another attention there; a block that already has one is refused.
        **attention_kwargs: passed to every attention module, e.g. ``reduction=16``.
    Returns:
        ``model``, changed in place.
    """
    from torchvision.models import resnet  # imported here: it is slow and only this function needs it

    if not isinstance(attention, str) and not callable(attention):
        raise TypeError(f"attention must be a registered name such as 'se' or a callable taking channels, "
                        f"got {type(attention).__name__}.")
    if is_selective_kernel(attention):
        raise ValueError("add_attention puts gates after a BatchNorm; Selective Kernel ('sk') is a convolution "
                         "that replaces one. Use the course's ResNet(attention='sk', position='conv2', groups=2).")
    if stages is not None and not isinstance(stages, (int, str)) and hasattr(stages, "__len__") and not len(stages):
        raise ValueError("add_attention: stages=() names no stage, so no block would get attention. Name stages "
                         "from 1 to 4 (layer1 to layer4), e.g. stages=(2, 3, 4), or None for all four.")
    try:
        chosen = check_stages(stages, 4)
    except ValueError as error:
        raise ValueError(f"add_attention: {error} Stage i is torchvision's layer{{i}}: GCNet's c3-c5, for example, "
                         f"are stages=(2, 3, 4).") from None
    layers = [getattr(model, f"layer{i}", None) for i in range(1, 5)]
    if not isinstance(model, nn.Module) or any(layer is None for layer in layers):
        raise TypeError(f"add_attention expects a torchvision ResNet with stages layer1 to layer4, "
                        f"got {type(model).__name__}. For the course's small ResNet use ResNet(attention=...).")
    for block in (block for layer in layers for block in layer):  # every block must be torchvision's
        if not isinstance(block, (resnet.BasicBlock, resnet.Bottleneck)):
            kind = f"{type(block).__module__}.{type(block).__qualname__}"
            raise TypeError(f"add_attention only knows torchvision's blocks (torchvision.models.resnet.BasicBlock "
                            f"and Bottleneck), found {kind}. Build the model with torchvision.models (e.g. "
                            f"resnet18(weights=None)); timm's ResNets take their own attn_layer= argument.")
    blocks = [block for i, layer in enumerate(layers, start=1) if i in chosen for block in layer]
    for block in blocks:
        if isinstance(getattr(block, _last_batch_norm(block)), BatchNormWithAttention):
            raise ValueError("this model already has attention in its residual blocks; "
                             "build a fresh one to try another kind.")
    slots = []  # every module is built before the model changes: a bad argument leaves it as it was
    for block in blocks:
        name = _last_batch_norm(block)
        bn = getattr(block, name)
        module = make_attention(attention, bn.num_features, attention_kwargs, "add_attention")
        slots.append((block, name, BatchNormWithAttention(bn, module)))
    for block, name, slot in slots:
        setattr(block, name, slot)
    return model


def _last_batch_norm(block):
    """Name of the BatchNorm that ends a torchvision block's residual branch."""
    return "bn3" if hasattr(block, "bn3") else "bn2"  # Bottleneck, BasicBlock
