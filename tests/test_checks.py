"""Tests of attn_course.checks: the exercise checker passes right answers and names what is wrong."""

import sys

import numpy as np
import pytest
import torch
from torch import nn

from attn_course.attention import ChannelAttention, SqueezeExcite
from attn_course.checks import CheckReport, check_attention, check_function

ALL_CHECKS = ["module", "forward", "shape", "gate", "parameters", "output", "gradient"]


class StudentSE(nn.Module):
    """A correct SE with the reference's attribute names; subclasses break one thing each."""

    def __init__(self, channels, reduction=4, bias=True):
        super().__init__()
        self.fc1 = nn.Linear(channels, channels // reduction, bias=bias)
        self.fc2 = nn.Linear(channels // reduction, channels, bias=bias)
        self.gate = nn.Sigmoid()

    def weights(self, x):
        return self.gate(self.fc2(torch.relu(self.fc1(x.mean(dim=(2, 3))))))

    def forward(self, x):
        return x * self.weights(x)[:, :, None, None]


class RenamedSE(nn.Module):
    """Correct, but with other attribute names: the checker copies the weights by order."""

    def __init__(self, channels, reduction=4):
        super().__init__()
        self.squeeze = nn.Linear(channels, channels // reduction)
        self.expand = nn.Linear(channels // reduction, channels)
        self.gate = nn.Sigmoid()

    def forward(self, x):
        s = self.gate(self.expand(torch.relu(self.squeeze(x.mean(dim=(2, 3))))))
        return x * s[:, :, None, None]


class WrongShape(StudentSE):
    def forward(self, x):
        return super().forward(x).mean(1, keepdim=True)


class NoGate(StudentSE):
    def __init__(self, channels):
        super().__init__(channels)
        del self.gate

    def forward(self, x):
        s = torch.sigmoid(self.fc2(torch.relu(self.fc1(x.mean(dim=(2, 3))))))
        return x * s[:, :, None, None]


class GateNotCalled(StudentSE):
    def forward(self, x):
        s = torch.sigmoid(self.fc2(torch.relu(self.fc1(x.mean(dim=(2, 3))))))
        return x * s[:, :, None, None]


class NoSigmoid(StudentSE):
    def __init__(self, channels):
        super().__init__(channels)
        self.gate = nn.Identity()


class NoBias(StudentSE):
    def __init__(self, channels):
        super().__init__(channels, bias=False)


class MaxPool(StudentSE):
    def forward(self, x):
        s = self.gate(self.fc2(torch.relu(self.fc1(x.amax(dim=(2, 3))))))
        return x * s[:, :, None, None]


class Raises(StudentSE):
    def forward(self, x):
        return x @ self.fc1.weight  # shape error


class Detached(StudentSE):
    def forward(self, x):
        return super().forward(x).detach()


class ReturnsTuple(StudentSE):
    def forward(self, x):
        return super().forward(x), None


def reference():
    torch.manual_seed(0)
    return SqueezeExcite(16, 4)


def failed(report):
    return [c.name for c in report.checks if not c.passed]


def test_correct_se_passes():
    report = check_attention(StudentSE(16), reference())
    assert report.passed, str(report)
    assert [c.name for c in report.checks] == ALL_CHECKS
    assert "copied by name" in report.checks[5].message
    assert "all checks passed" in str(report)


def test_renamed_se_passes_with_weights_matched_by_shape():
    report = check_attention(RenamedSE(16), reference())
    assert report.passed, str(report)
    assert "copied by matching names and shapes" in report.checks[5].message


def test_the_reference_passes_itself():
    assert check_attention(reference(), reference()).passed


@pytest.mark.parametrize(
    "student, failing, hint",
    [
        (WrongShape(16), ["shape", "output"], "must keep the input's shape"),
        (NoGate(16), ["gate"], "no submodule named 'gate'"),
        (GateNotCalled(16), ["gate"], "exists but forward never called it"),
        (NoSigmoid(16), ["gate", "output"], "is the sigmoid missing"),
        (NoBias(16), ["parameters", "output"], "check the layer sizes and biases"),
        (MaxPool(16), ["output"], "compare your forward with the equations"),
        (Detached(16), ["gradient"], "Avoid torch.no_grad(), .detach()"),
        (ReturnsTuple(16), ["shape"], "forward returned a tuple, not a tensor"),
    ],
)
def test_broken_modules_fail_the_right_checks(student, failing, hint):
    report = check_attention(student, reference())
    assert not report.passed
    assert failed(report) == failing, str(report)
    assert hint in str(report)
    assert "some checks failed" in str(report) and "[FAIL]" in str(report)


def test_forward_that_raises():
    report = check_attention(Raises(16), reference())
    assert [c.name for c in report.checks] == ["module", "forward"]
    assert failed(report) == ["forward"]
    message = report.checks[1].message
    assert "raised RuntimeError" in message and "x @ self.fc1.weight" in message  # where it failed


def test_an_error_raised_inside_the_package_names_its_file_not_half_a_statement():
    from attn_course.attention import SqueezeExcite

    report = check_attention(SqueezeExcite(8, reduction=4), reference())  # a library module fed 16 channels
    message = report.checks[1].message
    assert "was built for 8 channels" in message
    assert "(raised in attn_course/attention/_validate.py, line " in message, message
    assert "raise ValueError(" not in message  # the first line of a multi-line statement says nothing


def test_the_checkers_own_errors_carry_no_location():
    report = check_attention(NoBias(16), reference())
    output = next(c for c in report.checks if c.name == "output").message
    assert "the weights do not line up" in output and output.endswith(")]"), output  # no "(line ...: raise"


def test_wrong_channels_in_student():
    report = check_attention(StudentSE(8), reference())  # built for 8 channels, fed 16
    assert failed(report) == ["forward"]


@pytest.mark.parametrize(
    "student, hint",
    [
        ("se", "expected an nn.Module, got str"),
        (lambda x: x, "expected an nn.Module, got function"),
        (None, "expected an nn.Module, got NoneType"),
        (StudentSE, "you passed the class StudentSE, not a module: create one first"),
    ],
)
def test_not_a_module(student, hint):
    report = check_attention(student, reference())
    assert [c.name for c in report.checks] == ["module"] and failed(report) == ["module"]
    assert hint in str(report)


class NoSuperInit(nn.Module):
    def __init__(self, channels):  # forgets super().__init__()
        self.channels = channels

    def forward(self, x):
        return x


def test_module_without_super_init_is_reported_not_raised():
    report = check_attention(NoSuperInit(16), reference())
    assert failed(report) == ["module"]
    assert "super().__init__()" in str(report)


def test_forward_returning_numpy():
    class Numpy(StudentSE):
        def forward(self, x):
            return super().forward(x).numpy()

    report = check_attention(Numpy(16), reference())
    assert failed(report) == ["shape"] and "returned a ndarray, not a tensor" in str(report)


def test_broken_reference_raises():
    with pytest.raises(TypeError, match="the reference must be an nn.Module, got type"):
        check_attention(StudentSE(16), SqueezeExcite)


def test_empty_report_does_not_pass():
    assert not CheckReport("nothing checked").passed


def test_check_function():
    def reference_kernel(c):
        return c // 16 + 1

    def student_kernel(c):
        return c // 16 + 1

    def wrong_kernel(c):
        return 3

    def crashing_kernel(c):
        return c / 0

    cases = [16, 32, 64]
    ok = check_function(student_kernel, reference_kernel, cases)
    assert ok.passed and "all 3 cases agree" in str(ok)
    bad = check_function(wrong_kernel, reference_kernel, cases)
    assert failed(bad) == ["values"]
    assert "2 of 3 cases differ" in str(bad) and "wrong_kernel(16) = 3, expected 2" in str(bad)
    crash = check_function(crashing_kernel, reference_kernel, cases)
    assert failed(crash) == ["runs"] and "ZeroDivisionError" in str(crash)
    assert "crashing_kernel(16) raised" in str(crash)
    not_callable = check_function(42, reference_kernel, cases)
    assert failed(not_callable) == ["callable"] and "expected a function, got int" in str(not_callable)


def test_check_function_with_an_array_result_is_reported_not_raised():
    # An array compared with a number has no single truth value; that is a wrong answer, not a crash.
    report = check_function(lambda c: torch.tensor([c, c]), lambda c: c, [2, 3])
    assert failed(report) == ["values"] and "2 of 2 cases differ" in str(report)


def test_check_function_with_tuple_arguments():
    report = check_function(lambda a, b: a + b, lambda a, b: a + b, [(1, 2), (3, 4)], title="add")
    assert report.passed and str(report).startswith("add: all checks passed")
    report = check_function(lambda a, b: a - b, lambda a, b: a + b, [(1, 2), (3, 0)])
    assert failed(report) == ["values"] and "1 of 2 cases differ" in str(report)


class ReorderedSE(nn.Module):
    """Correct, with other names, declared in the other order: expand before squeeze."""

    def __init__(self, channels, reduction=4):
        super().__init__()
        self.expand = nn.Linear(channels // reduction, channels)
        self.squeeze = nn.Linear(channels, channels // reduction)
        self.gate = nn.Sigmoid()

    def forward(self, x):
        s = self.gate(self.expand(torch.relu(self.squeeze(x.mean(dim=(2, 3))))))
        return x * s[:, :, None, None]


def test_correct_module_named_and_declared_otherwise_passes():
    # It used to get "the weights do not line up": the tensors were copied in declaration order.
    report = check_attention(ReorderedSE(16), reference())
    assert report.passed, str(report)


class OtherChannelAttention(nn.Module):
    """CBAM's channel half, correct, with its MLP as two named layers declared in reverse."""

    def __init__(self, channels, reduction=4):
        super().__init__()
        self.up = nn.Linear(channels // reduction, channels)
        self.down = nn.Linear(channels, channels // reduction)
        self.gate = nn.Sigmoid()

    def mlp(self, z):
        return self.up(torch.relu(self.down(z)))

    def forward(self, x):
        s = self.gate(self.mlp(x.amax(dim=(2, 3))) + self.mlp(x.mean(dim=(2, 3))))
        return x * s[:, :, None, None]


def test_correct_channel_attention_with_other_layers_passes():
    torch.manual_seed(0)
    report = check_attention(OtherChannelAttention(16), ChannelAttention(16, 4))
    assert report.passed, str(report)


def test_reduction_one_asks_to_rename_instead_of_a_false_fail():
    # With reduction=1 both layers are Linear(16, 16): copied by order into the wrong layers, a
    # correct module was told to "compare your forward with the equations".
    torch.manual_seed(0)
    report = check_attention(ReorderedSE(16, reduction=1), SqueezeExcite(16, 1))
    text = str(report)
    assert failed(report) == ["output"], text
    assert "compare your forward" not in text
    assert "rename squeeze to fc1, expand to fc2" in text
    assert check_attention(StudentSE(16, reduction=1), SqueezeExcite(16, 1)).passed  # renamed, it passes


class WrongLayerSize(StudentSE):
    def __init__(self, channels):
        super().__init__(channels)
        self.fc1 = nn.Linear(channels // 2, channels // 4)

    def forward(self, x):
        z = x.mean(dim=(2, 3))
        return x * self.gate(self.fc2(torch.relu(self.fc1(z))))[:, :, None, None]


def test_error_is_located_in_the_students_code_not_in_torch():
    message = str(check_attention(WrongLayerSize(16), reference()))
    assert "self.fc2(torch.relu(self.fc1(z)))" in message, message
    assert "F.linear" not in message


class Exits(StudentSE):
    def forward(self, x):
        sys.exit("bye")


class Interrupted(StudentSE):
    def forward(self, x):
        raise KeyboardInterrupt


def test_sys_exit_in_forward_is_reported_and_keyboard_interrupt_goes_through():
    report = check_attention(Exits(16), reference())
    assert failed(report) == ["forward"] and "raised SystemExit: bye" in str(report)
    with pytest.raises(KeyboardInterrupt):
        check_attention(Interrupted(16), reference())
    report = check_function(lambda c: sys.exit(1), lambda c: c, [1])
    assert failed(report) == ["runs"] and "SystemExit" in str(report)
    with pytest.raises(KeyboardInterrupt):
        check_function(Interrupted(16).forward, lambda c: c, [1])


class NoGradInside(StudentSE):
    def forward(self, x):
        with torch.no_grad():
            return super().forward(x)


def test_no_grad_in_forward_gets_the_hint():
    report = check_attention(NoGradInside(16), reference())
    assert failed(report) == ["gradient"] and "Avoid torch.no_grad()" in str(report)


class NanGate(StudentSE):
    def forward(self, x):
        return x * self.gate(self.fc2(self.fc1(x.mean(dim=(2, 3)))) / 0 * 0)[:, :, None, None]


def test_nan_gate_is_named_not_called_a_missing_sigmoid():
    report = check_attention(NanGate(16), reference())
    assert "gave NaN" in str(report) and "is the sigmoid missing" not in str(report)


@pytest.mark.parametrize("make", [lambda: torch.ones(3), lambda: np.ones(3), lambda: [torch.ones(2), 1.5],
                                  lambda: float("nan"), lambda: {"a": torch.tensor([1.0, float("nan")])},
                                  lambda: torch.tensor(2.0, requires_grad=True)])
def test_check_function_finds_equal_results_equal(make):
    # Equal tensors and arrays were reported as different, and NaN never equalled NaN.
    report = check_function(lambda: make(), lambda: make(), [()])
    assert report.passed, str(report)


def test_check_function_compares_floats_with_a_tolerance_and_integers_exactly():
    assert check_function(lambda x: 29.000000000000004, lambda x: 29.0, [1]).passed
    assert not check_function(lambda x: 29.01, lambda x: 29.0, [1]).passed
    assert not check_function(lambda x: 10**17 + 1, lambda x: 10**17, [1]).passed
    assert not check_function(lambda: torch.ones(3), lambda: torch.ones(4), [()]).passed
    assert not check_function(lambda: np.array([True, False]), lambda: np.array([True, True]), [()]).passed


def test_check_function_takes_a_generator_and_refuses_no_cases():
    report = check_function(lambda c: c + 1, lambda c: c + 1, (c for c in [1, 2, 3]))
    assert report.passed and "all 3 cases agree" in str(report)
    with pytest.raises(ValueError, match="check_function got no cases"):
        check_function(lambda c: c, lambda c: c, [])

