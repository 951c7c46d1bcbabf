"""Random weights for tests that compare a module with an independent computation."""

import torch
from torch import nn


def randomise(module, seed=0):
    """Give every parameter and BatchNorm statistic a random value, so that no term is trivially 0 or 1.

    BatchNorm scales and running variances are drawn from [0.5, 1.5) (positive, as trained ones are);
    everything else from N(0, 0.5^2). Returns ``module``.
    """
    generator = torch.Generator().manual_seed(seed)
    positive = set()
    for child in module.modules():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            positive.update(id(t) for t in (child.weight, child.running_var) if t is not None)
    with torch.no_grad():
        for name, tensor in list(module.named_parameters()) + list(module.named_buffers()):
            if "num_batches" in name:
                continue
            if id(tensor) in positive:
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
            else:
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.5)
    return module
