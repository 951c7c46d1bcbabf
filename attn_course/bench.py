"""What a module costs: parameters, FLOPs and latency."""

import numbers
import statistics
import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .models import eval_mode, model_device


def count_parameters(model, trainable_only=False):
    """Number of parameters (all of them, or only those with ``requires_grad``)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"count_parameters needs an nn.Module, got {type(model).__name__}.")
    if not isinstance(trainable_only, bool):  # "no" would count as True
        raise TypeError(f"trainable_only must be True or False, got {trainable_only!r}.")
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_flops(model, input_shape):
    """FLOPs of one forward pass on a zero tensor of ``input_shape``, by ``torch.utils.flop_counter``.

    The counter counts matrix multiplications and convolutions (2 FLOPs per multiply-add);
    element-wise work such as sigmoids, pooling and the gating product is not counted.
    """
    device = model_device(model)
    x = torch.zeros(input_shape, device=device)
    with eval_mode(model), torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops()


def _synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def latency(model, input_shape, warmup=5, repeats=20):
    """Median wall time of one forward pass, in milliseconds, after ``warmup`` untimed passes.

    Runs on the model's device with gradients off and synchronises CUDA/MPS around each pass,
    so the time covers the GPU work, not just its launch.
    """
    for name, value, minimum in (("warmup", warmup, 0), ("repeats", repeats, 1)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
            raise ValueError(f"latency: {name} must be an int >= {minimum}, got {value!r}.")
    device = model_device(model)
    x = torch.randn(input_shape, device=device)
    times = []
    with eval_mode(model), torch.no_grad():
        for i in range(warmup + repeats):
            _synchronize(device)
            start = time.perf_counter()
            model(x)
            _synchronize(device)
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def interleaved_latency(models, baseline, rounds=7, input_shape=(1, 1, 32, 32), warmup=2, repeats=10):
    """Median latency (ms) of each of ``models`` (a dict name -> model) and the noise floor beside it.

    The models are timed in turn within each of ``rounds`` rounds, so that a slow spell of a shared
    machine falls on all of them, and ``baseline`` (a key of ``models``) is timed a second time in
    every round. The noise floor is what the machine alone does to a measurement: how much the
    baseline's two timings of a round typically differ, or how far their two medians lie apart,
    whichever is larger, as a fraction. A model's difference from the baseline means something
    only beyond it. Returns ``({name: median ms}, floor)``.
    """
    if baseline not in models:
        raise ValueError(f"interleaved_latency: baseline {baseline!r} is not one of the models {list(models)}.")
    if isinstance(rounds, bool) or not isinstance(rounds, numbers.Integral) or rounds < 1:
        raise ValueError(f"interleaved_latency: rounds must be an int >= 1, got {rounds!r}.")
    times, again = {name: [] for name in models}, []
    for _ in range(rounds):
        for name, model in models.items():
            times[name].append(latency(model, input_shape, warmup=warmup, repeats=repeats))
        again.append(latency(models[baseline], input_shape, warmup=warmup, repeats=repeats))
    first = times[baseline]
    floor = max(statistics.median(abs(a / b - 1) for a, b in zip(again, first)),
                abs(statistics.median(again) / statistics.median(first) - 1))
    return {name: statistics.median(t) for name, t in times.items()}, floor


def training_step_times(models, input_shape, num_classes=10, repeats=20, warmup=3, lr=1e-3):
    """Median seconds of one training step (forward, backward, AdamW update) of each model.

    ``models`` maps names to modules returning logits (B, ``num_classes``). The models are timed
    in turns, step by step (model A, B, C, A, B, C, ...), so that a change in the machine's load
    touches every model alike and their ratios stay meaningful. Returns a dict name -> seconds.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}.")
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(input_shape, generator=generator)
    y = torch.randint(0, num_classes, (input_shape[0],), generator=generator)
    setups = {}
    for name, model in models.items():
        device = model_device(model)
        model.train()
        setups[name] = (model, torch.optim.AdamW(model.parameters(), lr=lr), x.to(device), y.to(device), device)
    times = {name: [] for name in models}
    for i in range(warmup + repeats):
        for name, (model, optimizer, inputs, targets, device) in setups.items():
            _synchronize(device)
            start = time.perf_counter()
            loss = nn.functional.cross_entropy(model(inputs), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            _synchronize(device)
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def cost_table(models, input_shape, warmup=5, repeats=20):
    """Parameters, FLOPs and latency of each model in ``models`` (a dict name -> module).

    Returns a list of dicts with keys ``model``, ``params``, ``mflops`` and ``ms``; print it with
    :func:`format_table`.
    """
    return [
        {
            "model": name,
            "params": count_parameters(model),
            "mflops": count_flops(model, input_shape) / 1e6,
            "ms": latency(model, input_shape, warmup, repeats),
        }
        for name, model in models.items()
    ]


def format_table(rows, floatfmt=".3f"):
    """Render a list of same-keyed dicts as a Markdown table (IPython's ``Markdown`` shows it)."""
    if not rows:
        return ""
    keys = list(rows[0])

    def cell(value):
        if isinstance(value, float):
            return format(value, floatfmt)
        if isinstance(value, int) and not isinstance(value, bool):
            return f"{value:,}"
        return str(value)

    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(cell(row[k]) for k in keys) + " |" for row in rows]
    return "\n".join(lines)
