"""The exercise checker: runs a student's code against a reference and explains what differs.

It never raises because of the student's code: every failure becomes a line of the report.
Only a broken *reference* (the instructor's side) raises.
"""

import copy
import traceback
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class Check:
    name: str
    passed: bool
    message: str


@dataclass
class CheckReport:
    """The outcome of one exercise: a list of checks; ``passed`` when all of them pass."""

    title: str
    checks: list = field(default_factory=list)

    @property
    def passed(self):
        return bool(self.checks) and all(check.passed for check in self.checks)

    def add(self, name, passed, message):
        self.checks.append(Check(name, bool(passed), message))
        return bool(passed)

    def __str__(self):
        verdict = "all checks passed" if self.passed else "some checks failed"
        lines = [f"{self.title}: {verdict}"]
        lines += [f"  [{'ok' if c.passed else 'FAIL'}] {c.name}: {c.message}" for c in self.checks]
        return "\n".join(lines)

    __repr__ = __str__


def _error_line(error):
    """The exception's type and message, plus where in the student's code it was raised."""
    frames = traceback.extract_tb(error.__traceback__)
    where = f" (line {frames[-1].lineno}: {frames[-1].line})" if frames and frames[-1].line else ""
    return f"{type(error).__name__}: {error}{where}"


def _find_gate(module):
    for name, sub in module.named_modules():
        if name.rsplit(".", 1)[-1] == "gate":
            return name, sub
    return None, None


def _copy_weights(source, target):
    """Load ``source``'s weights into ``target``: by name if the names match, else by order."""
    try:
        target.load_state_dict(source.state_dict())
        return "by name"
    except Exception:  # names differ: fall back to the order of the tensors
        pass
    src, dst = list(source.state_dict().values()), target.state_dict()
    if len(src) != len(dst) or any(a.shape != b.shape for a, b in zip(src, dst.values())):
        shapes = lambda m: [tuple(t.shape) for t in m.state_dict().values()]
        raise ValueError(
            f"the weights do not line up with the reference's: yours have shapes {shapes(target)}, "
            f"the reference's {shapes(source)}"
        )
    target.load_state_dict(dict(zip(dst, src)))
    return "by order"


def check_attention(student, reference, input_shape=(2, 16, 8, 8), atol=1e-5, seed=0, title=None):
    """Compare a student's attention module with a reference module of the same job.

    Checks, in order: it is an ``nn.Module``; its forward pass runs; the output has the input's
    shape; its ``gate`` submodule exists and gives values in [0, 1]; it has as many parameters
    as the reference; with the reference's weights copied in, it gives the reference's output;
    and gradients reach the input.

    Args:
        student: the student's module (an instance, not the class).
        reference: a module that does it right, e.g. ``attn_course.attention.SqueezeExcite(16, 4)``.
        input_shape: (B, C, H, W) of the random test input; C must suit both modules.
        atol: tolerance of the output comparison.
    Returns:
        A :class:`CheckReport`; print it, or assert ``report.passed``.
    """
    if not isinstance(reference, nn.Module):
        raise TypeError(f"the reference must be an nn.Module, got {type(reference).__name__}.")
    report = CheckReport(title or f"Checking {type(student).__name__}")
    if isinstance(student, type) and issubclass(student, nn.Module):
        report.add("module", False, f"you passed the class {student.__name__}, not a module: "
                   f"create one first, e.g. {student.__name__}(channels).")
        return report
    if isinstance(student, nn.Module) and "_modules" not in vars(student):
        report.add("module", False, f"{type(student).__name__}.__init__ never calls super().__init__(): "
                   f"make it the first line of __init__.")
        return report
    if not report.add("module", isinstance(student, nn.Module),
                      "is an nn.Module" if isinstance(student, nn.Module) else
                      f"expected an nn.Module, got {type(student).__name__}: write a class that "
                      f"subclasses torch.nn.Module and pass an instance of it."):
        return report

    x = torch.randn(input_shape, generator=torch.Generator().manual_seed(seed))
    gate_name, gate = _find_gate(student)
    recorded = []
    handle = gate.register_forward_hook(lambda m, i, o: recorded.append(o)) if gate is not None else None
    try:
        with torch.no_grad():
            out = student(x.clone())
    except Exception as error:
        report.add("forward", False, f"calling it on a tensor of shape {tuple(x.shape)} raised {_error_line(error)}")
        return report
    finally:
        if handle is not None:
            handle.remove()
    report.add("forward", True, f"runs on a tensor of shape {tuple(x.shape)}")

    if not isinstance(out, torch.Tensor):
        report.add("shape", False, f"forward returned a {type(out).__name__}, not a tensor.")
        return report
    report.add("shape", out.shape == x.shape,
               f"output {tuple(out.shape)}" + ("" if out.shape == x.shape else
                                               f", but attention must keep the input's shape {tuple(x.shape)}"))

    if gate is None:
        report.add("gate", False, "no submodule named 'gate': store the sigmoid as self.gate and call "
                   "it in forward, so that hooks can record the attention weights.")
    elif not recorded or not isinstance(recorded[0], torch.Tensor):
        report.add("gate", False, f"self.{gate_name} exists but forward never called it.")
    else:
        g = recorded[0]
        in_range = bool(g.min() >= 0 and g.max() <= 1)
        report.add("gate", in_range, f"values in [{g.min().item():.3f}, {g.max().item():.3f}]"
                   + ("" if in_range else "; a gate must lie in [0, 1]: is the sigmoid missing?"))

    n_student = sum(p.numel() for p in student.parameters())
    n_reference = sum(p.numel() for p in reference.parameters())
    report.add("parameters", n_student == n_reference,
               f"{n_student:,}" + ("" if n_student == n_reference else
                                   f", the reference has {n_reference:,}: check the layer sizes and biases"))

    try:
        twin = copy.deepcopy(student)
        how = _copy_weights(reference, twin)
        with torch.no_grad():
            expected, got = reference(x.clone()), twin(x.clone())
        diff = (expected - got).abs().max().item()
        report.add("output", diff <= atol,
                   f"with the reference's weights (copied {how}) the largest difference is {diff:.2e}"
                   + ("" if diff <= atol else f" > {atol:.0e}: compare your forward with the equations"))
    except Exception as error:
        report.add("output", False, f"could not compare with the reference: {error}")

    try:
        xg = x.clone().requires_grad_(True)
        student(xg).sum().backward()
        ok = xg.grad is not None and bool(xg.grad.abs().sum() > 0)
        report.add("gradient", ok, "reaches the input" if ok else
                   "no gradient reaches the input: avoid .detach(), .item() or numpy in forward")
    except Exception as error:
        report.add("gradient", False, f"backward raised {_error_line(error)}")
    return report


def check_function(student_fn, reference_fn, cases, title=None):
    """Compare ``student_fn(*args)`` with ``reference_fn(*args)`` for every ``args`` in ``cases``."""
    report = CheckReport(title or f"Checking {getattr(student_fn, '__name__', 'your function')}")
    if not callable(student_fn):
        report.add("callable", False, f"expected a function, got {type(student_fn).__name__}.")
        return report
    wrong = []
    for args in cases:
        args = args if isinstance(args, tuple) else (args,)
        call = f"{getattr(student_fn, '__name__', 'f')}({', '.join(map(repr, args))})"
        expected = reference_fn(*args)
        try:
            got = student_fn(*args)
        except Exception as error:
            report.add("runs", False, f"{call} raised {_error_line(error)}")
            return report
        try:
            differs = bool(got != expected)
        except Exception:  # e.g. an array compared with a number: no single truth value
            differs = True
        if differs:
            wrong.append(f"{call} = {got!r}, expected {expected!r}")
    report.add("values", not wrong, f"all {len(cases)} cases agree" if not wrong else
               f"{len(wrong)} of {len(cases)} cases differ, e.g. " + "; ".join(wrong[:3]))
    return report
