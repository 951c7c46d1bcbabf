"""Seeding, device choice, and a small training loop with a progress bar."""

import numbers
import random
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .models import eval_mode, model_device


def set_seed(seed=0):
    """Seed Python, NumPy and PyTorch (CPU and every GPU) from one number, an int in [0, 2**32 - 1]."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an int from 0 to 2**32 - 1 (NumPy's range), got {seed!r}.")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds CUDA and MPS


def get_device(prefer=None):
    """The best device available: CUDA, then Apple's MPS, then the CPU; ``prefer`` overrides."""
    if prefer is not None:
        device = torch.device(prefer)
        mps = getattr(torch.backends, "mps", None)
        available = {"cuda": torch.cuda.is_available, "mps": lambda: mps is not None and mps.is_available()}
        if device.type in available and not available[device.type]():
            raise ValueError(f"get_device: {device.type} is not available on this machine; use get_device() to take "
                             f"the best device there is, or prefer='cpu'.")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@dataclass
class History:
    """Per-epoch records of one training run."""

    train_loss: list = field(default_factory=list)
    train_accuracy: list = field(default_factory=list)
    test_accuracy: list = field(default_factory=list)
    seconds: float = 0.0

    @property
    def final_test_accuracy(self):
        return self.test_accuracy[-1] if self.test_accuracy else float("nan")


@torch.no_grad()
def evaluate(model, loader, device=None):
    """Accuracy of ``model`` over ``loader`` (a float in [0, 1]); per pixel for dense targets."""
    device = device or model_device(model)
    if len(loader) == 0:
        raise ValueError("evaluate: the loader has no batches: is its data set empty?")
    correct = total = nan_batches = 0
    with eval_mode(model):
        for images, labels in loader:
            logits = model(images.to(device))
            nan_batches += bool(logits.isnan().any()) if logits.is_floating_point() else 0
            correct += (logits.argmax(1).cpu() == labels).float().mean().item() * len(labels)
            total += len(labels)
    if nan_batches:  # the argmax of a NaN row is arbitrary: the accuracy means nothing
        warnings.warn(f"evaluate: the model's outputs contain NaN in {nan_batches} of {len(loader)} batches, so the "
                      f"accuracy is meaningless. Has the training diverged (try a smaller learning rate)?",
                      RuntimeWarning, stacklevel=2)
    return correct / total


def fit(model, train_loader, test_loader=None, epochs=3, lr=3e-3, device=None, loss_fn=None,
        progress=True, desc="training", on_epoch_end=None):
    """Train ``model`` with AdamW and a one-cycle learning rate; return a :class:`History`.

    Args:
        model: the network; it is moved to ``device``.
        train_loader, test_loader: loaders of ``(inputs, targets)``; the test set is scored
            after every epoch when given.
        epochs: passes over ``train_loader``.
        lr: peak learning rate of the one-cycle schedule.
        device: defaults to :func:`get_device`.
        loss_fn: defaults to cross-entropy; gets ``(logits, targets)``.
        progress: show a tqdm progress bar over the batches.
        desc: label of the progress bar.
        on_epoch_end: called as ``on_epoch_end(epoch, model)`` after each epoch (epoch counts from
            1), to look at the model mid-training; it must not change the model (work on a
            ``copy.deepcopy`` of it to run it in training mode).
    """
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise ValueError(f"epochs must be an int >= 1, got {epochs!r}.")
    if len(train_loader) == 0:
        raise ValueError("train_loader has no batches: is its data set empty?")
    if test_loader is not None and len(test_loader) == 0:
        raise ValueError("test_loader has no batches: is its data set empty? Pass None to train without testing.")
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not lr > 0:
        raise ValueError(f"lr must be a positive number, got {lr!r}.")
    for name, value in (("loss_fn", loss_fn), ("on_epoch_end", on_epoch_end)):
        if value is not None and not callable(value):  # found out only after an epoch of training otherwise
            raise TypeError(f"{name} must be a function, got {type(value).__name__}.")
    if not isinstance(progress, bool):
        raise TypeError(f"progress must be True or False, got {progress!r}.")
    device = device or get_device()
    loss_fn = loss_fn or F.cross_entropy
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=epochs * len(train_loader)
    )
    history = History()
    start = time.perf_counter()
    bar = tqdm(total=epochs * len(train_loader), desc=desc, disable=not progress, leave=True)
    for epoch in range(epochs):
        loss_sum = correct = seen = 0
        for inputs, targets in train_loader:
            inputs, targets = inputs.to(device), targets.to(device)
            try:
                logits = model(inputs)
            except ValueError as error:  # costs nothing unless raised
                if len(inputs) == 1 and "more than 1 value per channel" in str(error):
                    raise ValueError(
                        "fit got a batch of one image, which BatchNorm over pooled (1 x 1) features cannot "
                        "normalise: build the loader with drop_last=True (attn_course.data.loaders_for drops "
                        "such a last batch), or use a batch size that does not leave one image."
                    ) from error
                raise
            loss = loss_fn(logits, targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            loss_sum += loss.item() * len(targets)
            correct += (logits.argmax(1) == targets).float().mean().item() * len(targets)
            seen += len(targets)
            bar.update()
        history.train_loss.append(loss_sum / seen)
        history.train_accuracy.append(correct / seen)
        postfix = {"epoch": epoch + 1, "loss": f"{loss_sum / seen:.3f}"}
        if test_loader is not None:
            history.test_accuracy.append(evaluate(model, test_loader, device))
            postfix["test acc"] = f"{history.test_accuracy[-1]:.3f}"
        bar.set_postfix(postfix)
        if on_epoch_end is not None:
            with eval_mode(model):  # restores training mode for the next epoch, whatever the callback did
                on_epoch_end(epoch + 1, model)
    bar.close()
    history.seconds = time.perf_counter() - start
    return history
