"""Tests of attn_course.bench: parameters, FLOPs, latency and the cost table."""

import pytest
from torch import nn

from attn_course.bench import cost_table, count_flops, count_parameters, format_table, latency


def test_count_parameters():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Linear(8, 5, bias=False))
    assert count_parameters(model) == (3 * 8 * 9 + 8) + (8 + 8) + 8 * 5
    assert count_parameters(model) == sum(p.numel() for p in model.parameters())
    model[0].weight.requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == 8 + 16 + 40
    assert count_parameters(model) == 216 + 8 + 16 + 40
    with pytest.raises(TypeError, match="count_parameters needs an nn.Module, got list"):
        count_parameters([nn.Linear(2, 2)])


def test_count_flops_linear():
    # y = x W^T: (B, in) x (in, out) is B * in * out multiply-adds, 2 FLOPs each; the bias is not counted.
    assert count_flops(nn.Linear(10, 5), (3, 10)) == 2 * 3 * 10 * 5


@pytest.mark.parametrize("stride, out_size", [(1, 16), (2, 8)])
def test_count_flops_conv(stride, out_size):
    conv = nn.Conv2d(3, 8, 3, stride=stride, padding=1)
    # Each of the B * C_out * H_out * W_out outputs takes C_in * k * k multiply-adds.
    macs = 2 * 8 * out_size * out_size * 3 * 3 * 3
    assert count_flops(conv, (2, 3, 16, 16)) == 2 * macs


def test_count_flops_sums_layers_and_restores_mode():
    model = nn.Sequential(nn.Conv2d(1, 4, 1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 5 * 5, 2)).train()
    expected = 2 * (4 * 25 * 1) + 2 * (100 * 2)  # batch 1; the ReLU is not counted
    assert count_flops(model, (1, 1, 5, 5)) == expected
    assert model.training


def test_latency():
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU()).train()
    ms = latency(model, (1, 1, 16, 16), warmup=1, repeats=3)
    assert isinstance(ms, float) and ms > 0
    assert model.training
    with pytest.raises(ValueError, match="repeats must be an int >= 1, got 0"):
        latency(model, (1, 1, 16, 16), repeats=0)


def test_cost_table_and_format_table():
    models = {"small": nn.Linear(4, 2), "big": nn.Linear(4, 300)}
    rows = cost_table(models, (1, 4), warmup=0, repeats=2)
    assert [r["model"] for r in rows] == ["small", "big"]
    assert all(list(r) == ["model", "params", "mflops", "ms"] for r in rows)
    assert [r["params"] for r in rows] == [10, 1500]
    assert [r["mflops"] for r in rows] == pytest.approx([2 * 4 * 2 / 1e6, 2 * 4 * 300 / 1e6])
    assert all(r["ms"] > 0 for r in rows)

    table = format_table(rows).splitlines()
    assert table[0] == "| model | params | mflops | ms |"
    assert table[1] == "|---|---|---|---|"
    assert len(table) == 4
    assert table[3].startswith("| big | 1,500 | 0.002 | ")


def test_format_table_cells():
    rows = [{"name": "a", "n": 12345, "x": 0.123456, "ok": True}]
    assert format_table(rows, floatfmt=".2f").splitlines()[2] == "| a | 12,345 | 0.12 | True |"
    assert format_table([]) == ""


@pytest.mark.parametrize("kwargs, message", [({"warmup": -3}, "warmup must be an int >= 0"),
                                             ({"repeats": 0}, "repeats must be an int >= 1"),
                                             ({"repeats": 2.5}, "repeats must be an int >= 1")])
def test_latency_validates_its_counts(kwargs, message):
    # latency(warmup=-3) used to end in "no median for empty data".
    with pytest.raises(ValueError, match=message):
        latency(nn.Identity(), (1, 3, 4, 4), **{"repeats": 1, **kwargs})


def test_parameter_free_modules_can_be_measured():
    from attn_course.attention import GatherExcite

    rows = cost_table({"ge": GatherExcite(8)}, (1, 8, 4, 4), warmup=0, repeats=1)
    assert rows[0]["params"] == 0 and rows[0]["ms"] > 0


def test_count_parameters_wants_a_bool():
    with pytest.raises(TypeError, match="trainable_only must be True or False"):
        count_parameters(nn.Linear(2, 2), trainable_only="no")


def test_interleaved_latency_times_every_model_and_measures_the_baseline_against_itself(monkeypatch):
    import attn_course.bench as bench

    calls = []
    fake = iter([1.0, 2.0, 1.1, 1.0, 2.0, 0.9, 1.0, 2.0, 1.2])  # per round: baseline, other, baseline again

    def timed(model, input_shape, warmup, repeats):
        calls.append(model)
        return next(fake)
    monkeypatch.setattr(bench, "latency", timed)
    ms, floor = bench.interleaved_latency({"base": "A", "other": "B"}, "base", rounds=3)
    assert calls == ["A", "B", "A"] * 3  # in turn, the baseline twice per round
    assert ms == {"base": 1.0, "other": 2.0}
    # the baseline's second timings differ from its first by 10 %, 10 % and 20 %: median 10 %;
    # their medians: 1.1 against 1.0, also 10 %
    assert abs(floor - 0.1) < 1e-9


def test_interleaved_latency_refuses_an_unknown_baseline():
    import pytest as _pytest

    from attn_course.bench import interleaved_latency
    with _pytest.raises(ValueError, match="baseline 'resnet' is not one of the models"):
        interleaved_latency({"ResNet": None}, "resnet")
