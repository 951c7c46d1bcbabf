"""Tests of attn_course.checks: the exercise checker passes right answers and names what is wrong."""

import pytest
import torch
from torch import nn

from attn_course.attention import SqueezeExcite
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


def test_renamed_se_passes_with_weights_copied_by_order():
    report = check_attention(RenamedSE(16), reference())
    assert report.passed, str(report)
    assert "copied by order" in report.checks[5].message


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
        (Detached(16), ["gradient"], "backward raised RuntimeError"),
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
