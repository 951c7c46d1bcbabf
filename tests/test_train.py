"""Tests of attn_course.train: seeding, device choice, fit and evaluate."""

import math
import random

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from attn_course.train import History, evaluate, fit, get_device, set_seed


def tiny_problem(seed=0, n=96, d=6, k=3):
    """A learnable problem: the label is the argmax of a fixed linear map of the input."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = (x @ torch.randn(d, k, generator=g)).argmax(1)
    return x, y


def loaders(seed=0, batch_size=16):
    x, y = tiny_problem()
    train = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True,
                       generator=torch.Generator().manual_seed(seed))
    test = DataLoader(TensorDataset(x, y), batch_size=50)
    return train, test


def small_net():
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 3))


def test_set_seed_seeds_python_numpy_and_torch():
    set_seed(3)
    a = (random.random(), np.random.rand(), torch.rand(2))
    set_seed(3)
    b = (random.random(), np.random.rand(), torch.rand(2))
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])
    set_seed(4)
    c = (random.random(), np.random.rand(), torch.rand(2))
    assert a[0] != c[0] and a[1] != c[1] and not torch.equal(a[2], c[2])


def train_weights(seed):
    set_seed(seed)
    model = small_net()  # initialisation and dropout draw from the seeded generator
    train, _ = loaders(seed)
    fit(model, train, epochs=2, device="cpu", progress=False)
    return model.state_dict()


def test_fit_is_deterministic_given_the_seed():
    a, b, c = train_weights(0), train_weights(0), train_weights(1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_get_device(monkeypatch):
    assert get_device("cpu") == torch.device("cpu")
    assert get_device("meta") == torch.device("meta")  # prefer wins, whatever is available
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert get_device() == torch.device("cpu")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert get_device() == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert get_device() == torch.device("cuda")  # CUDA before MPS
    assert get_device("cpu") == torch.device("cpu")


def test_get_device_matches_this_machine():
    expected = "cuda" if torch.cuda.is_available() else (
        "mps" if torch.backends.mps.is_available() else "cpu")
    assert get_device().type == expected


def test_fit_history_and_learning():
    set_seed(0)
    model = small_net()
    train, test = loaders()
    before = evaluate(model, test)
    history = fit(model, train, test, epochs=8, lr=3e-2, device="cpu", progress=False)
    assert isinstance(history, History)
    assert len(history.train_loss) == len(history.train_accuracy) == len(history.test_accuracy) == 8
    assert history.seconds > 0
    assert history.final_test_accuracy == history.test_accuracy[-1]
    assert history.train_loss[-1] < 0.5 * history.train_loss[0]
    assert history.test_accuracy[-1] > max(before, 0.8)
    assert all(0 <= a <= 1 for a in history.train_accuracy + history.test_accuracy)


def test_fit_without_test_loader():
    set_seed(0)
    train, _ = loaders()
    history = fit(small_net(), train, epochs=2, device="cpu", progress=False)
    assert len(history.train_loss) == 2 and history.test_accuracy == []
    assert math.isnan(history.final_test_accuracy)


def test_fit_custom_loss_is_used():
    calls = []

    def loss_fn(logits, targets):
        calls.append(len(targets))
        return nn.functional.cross_entropy(logits, targets)

    set_seed(0)
    train, _ = loaders(batch_size=32)
    fit(small_net(), train, epochs=2, device="cpu", loss_fn=loss_fn, progress=False)
    assert calls == [32, 32, 32] * 2


@pytest.mark.parametrize("epochs", [0, -1])
def test_fit_rejects_no_epochs(epochs):
    train, _ = loaders()
    with pytest.raises(ValueError, match=f"epochs must be an int >= 1, got {epochs}"):
        fit(small_net(), train, epochs=epochs, progress=False)


def test_evaluate_matches_manual_accuracy():
    set_seed(1)
    model = small_net().train()
    x, y = tiny_problem(seed=2, n=53)
    loader = DataLoader(TensorDataset(x, y), batch_size=10)  # last batch is smaller
    model.eval()
    with torch.no_grad():
        manual = sum(int(model(x[i : i + 1]).argmax(1).item() == y[i].item()) for i in range(53)) / 53
    model.train()
    assert evaluate(model, loader) == pytest.approx(manual)
    assert model.training  # mode restored
    assert 0 < manual < 1  # an untrained net is neither all right nor all wrong here


def test_evaluate_dense_targets():
    class PerPixel(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 3, 1)

        def forward(self, x):
            return self.conv(x)  # (B, 3, H, W)

    set_seed(0)
    model = PerPixel()
    x = torch.randn(7, 1, 4, 5)
    y = torch.randint(0, 3, (7, 4, 5))
    loader = DataLoader(TensorDataset(x, y), batch_size=3)
    with torch.no_grad():
        pred = model(x).argmax(1)
    manual = sum(int(pred[b, i, j] == y[b, i, j]) for b in range(7) for i in range(4) for j in range(5)) / 140
    assert evaluate(model, loader) == pytest.approx(manual)


def test_on_epoch_end_sees_each_epoch_in_eval_mode_and_changes_nothing():
    from attn_course.data import make_loaders
    from attn_course.models import ResNet
    from attn_course.train import fit, set_seed

    fresh = lambda: make_loaders(n_train=64, n_test=32, batch_size=32, seed=0)  # noqa: E731 (same batch order)
    seen = []

    def look(epoch, model):
        seen.append((epoch, model.training))
        model.train()  # a careless callback: fit puts the model back in training mode

    set_seed(0)
    watched = fit(ResNet(), *fresh(), epochs=2, device="cpu", progress=False, on_epoch_end=look)
    set_seed(0)
    plain = fit(ResNet(), *fresh(), epochs=2, device="cpu", progress=False)
    assert seen == [(1, False), (2, False)]
    assert watched.train_loss == plain.train_loss and watched.test_accuracy == plain.test_accuracy


@pytest.mark.parametrize("epochs", [1.5, 0, "3", True])
def test_fit_refuses_bad_epochs(epochs):
    from attn_course.data import make_loaders
    from attn_course.models import ResNet
    from attn_course.train import fit

    train_loader, _ = make_loaders(n_train=8, n_test=8, batch_size=4, seed=0)
    with pytest.raises(ValueError, match=r"epochs must be an int >= 1"):
        fit(ResNet(), train_loader, epochs=epochs, device="cpu", progress=False)


@pytest.mark.parametrize("seed", [-1, 2**32, 1.5, True, None])
def test_set_seed_refuses_seeds_out_of_range(seed):
    with pytest.raises(ValueError, match=r"seed must be an int from 0 to 2\*\*32 - 1"):
        set_seed(seed)


def test_set_seed_takes_numpy_ints():
    set_seed(np.int64(3))
    first = torch.rand(1)
    set_seed(3)
    assert torch.equal(first, torch.rand(1))


def test_evaluate_refuses_an_empty_loader():
    empty = DataLoader(TensorDataset(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long)), batch_size=2)
    with pytest.raises(ValueError, match="evaluate: the loader has no batches"):
        evaluate(nn.Linear(4, 2), empty)


def test_fit_says_why_a_batch_of_one_fails():
    from attn_course.attention import GatherExcite

    model = nn.Sequential(GatherExcite(4, extra_params=True, feature_size=2), nn.Flatten(), nn.Linear(16, 2))
    data = TensorDataset(torch.randn(3, 4, 2, 2), torch.tensor([0, 1, 0]))
    with pytest.raises(ValueError, match="fit got a batch of one image.*drop_last=True"):
        fit(model, DataLoader(data, batch_size=2), epochs=1, device="cpu", progress=False)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"on_epoch_end": "print"}, TypeError, "on_epoch_end must be a function, got str"),
    ({"loss_fn": 1}, TypeError, "loss_fn must be a function, got int"),
    ({"progress": "no"}, TypeError, "progress must be True or False"),
    ({"lr": 0}, ValueError, "lr must be a positive number"),
    ({"test_loader": DataLoader(TensorDataset(torch.zeros(0, 4), torch.zeros(0)), batch_size=2)}, ValueError,
     "test_loader has no batches"),
])
def test_fit_checks_its_arguments_before_training(kwargs, error, message):
    # A callback that is not callable used to fail only after a whole epoch of training.
    model = nn.Linear(4, 2)
    before = [p.clone() for p in model.parameters()]
    data = DataLoader(TensorDataset(torch.randn(4, 4), torch.tensor([0, 1, 0, 1])), batch_size=2)
    with pytest.raises(error, match=message):
        fit(model, data, epochs=1, device="cpu", **{"progress": False, **kwargs})
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_get_device_refuses_a_device_that_is_not_there():
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="cuda is not available on this machine"):
            get_device("cuda")
    assert get_device("cpu") == torch.device("cpu")


def test_evaluate_warns_about_nan_outputs():
    class Diverged(nn.Module):
        def forward(self, x):
            return torch.full((len(x), 2), float("nan"))

    data = DataLoader(TensorDataset(torch.randn(4, 4), torch.tensor([0, 1, 0, 1])), batch_size=2)
    with pytest.warns(RuntimeWarning, match="contain NaN in 2 of 2 batches"):
        evaluate(Diverged(), data)
