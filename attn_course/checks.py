"""The exercise checker: runs a student's code against a reference and explains what differs.

It never raises because of the student's code: every failure, ``sys.exit()`` included, becomes a
line of the report (only ``KeyboardInterrupt`` goes through, so that a student can stop it).
Only a broken *reference* or bad arguments from the instructor raise.
"""

import copy
import math
import os
import traceback
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
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


# Frames in these folders are library code, not the student's: an error is located in the deepest
# frame outside them (torch's ``F.linear`` is where a shape error surfaces, not where it was made).
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_LIBRARY_DIRS = tuple({os.path.dirname(os.path.dirname(torch.__file__)), os.path.dirname(os.__file__), _PACKAGE_DIR})


def _error_line(error):
    """The exception's type and message, plus where it was raised.

    That is the deepest line of the student's own code, shown as code ("line 12: x @ w"). An error
    raised inside a library with no student frame on the way (the student's module built with a
    wrong argument, say) names the library file instead ("raised in attn_course/attention/se.py,
    line 40"): its code line is not the student's, and a statement over several lines would show
    only its first ("raise ValueError("). The checker's own errors need no place.
    """
    frames = [f for f in traceback.extract_tb(error.__traceback__) if f.line]
    own = [f for f in frames if not os.path.abspath(f.filename).startswith(_LIBRARY_DIRS)]
    message = f": {error}" if str(error) else ""
    if own:
        where = f" (line {own[-1].lineno}: {own[-1].line})"
    elif frames and os.path.abspath(frames[-1].filename) == os.path.abspath(__file__):
        where = ""  # the checker's own message (e.g. weights that do not line up) says all there is
    elif frames:
        path = os.path.abspath(frames[-1].filename)
        root = next((d for d in _LIBRARY_DIRS if path.startswith(d)), os.path.dirname(path))
        shown = os.path.relpath(path, os.path.dirname(root) if root == _PACKAGE_DIR else root)
        where = f" (raised in {shown}, line {frames[-1].lineno})"
    else:
        where = ""
    return f"{type(error).__name__}{message}{where}"


def _find_gate(module):
    for name, sub in module.named_modules():
        if name.rsplit(".", 1)[-1] == "gate":
            return name, sub
    return None, None


def _key(name, tensor):
    """What a tensor is, without its module's name: its own name (weight, bias, ...) and its shape."""
    return name.rsplit(".", 1)[-1], tuple(tensor.shape)


def _call_order(module, x):
    """Names of the submodules that own tensors, in the order forward first calls them."""
    owners = {name for name in (key.rpartition(".")[0] for key in module.state_dict())}
    order, handles = [], []
    for name, sub in module.named_modules():
        if name in owners:
            handles.append(sub.register_forward_hook(lambda m, i, o, name=name: order.append(name)))
    try:
        with torch.no_grad():
            module(x.clone())
    finally:
        for handle in handles:
            handle.remove()
    return list(dict.fromkeys(order))


def _rename_hint(source, target, x):
    """Which of the student's layers to rename to which of the reference's, when the forward passes
    call layers of the same shapes in the same order; otherwise the reference's names and shapes."""
    def signatures(module, names):
        state = module.state_dict()
        return [sorted(_key(k, v) for k, v in state.items() if k.rpartition(".")[0] == n) for n in names]

    try:
        theirs, yours = _call_order(source, x), _call_order(target, x)
        if yours and len(theirs) == len(yours) and signatures(source, theirs) == signatures(target, yours):
            renames = [f"{a or '(the module itself)'} to {b}" for a, b in zip(yours, theirs) if a != b]
            return "rename " + ", ".join(renames) + " (the reference's names, in the order your forward calls them)"
    except (Exception, SystemExit):  # the student's forward is reported by the other checks
        pass
    shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in source.state_dict().items())
    return f"give your layers the reference's names: {shapes}"


def _copy_weights(source, target, x):
    """Load ``source``'s weights into ``target``; return how, or raise a ValueError that says why not.

    Tensors are paired by name; the rest by what they are (their own name, such as ``weight``, and
    their shape) when each such kind occurs once on both sides. When several tensors of one kind
    could be paired either way (two Linear(16, 16) for ``reduction=1``), it does not guess.
    """
    src, dst = source.state_dict(), target.state_dict()
    if set(src) == set(dst) and all(src[k].shape == dst[k].shape for k in src):
        target.load_state_dict(src)
        return "by name"
    pairs = {k: k for k in dst if k in src and src[k].shape == dst[k].shape}
    rest_src = {k: v for k, v in src.items() if k not in pairs.values()}
    rest_dst = {k: v for k, v in dst.items() if k not in pairs}
    kinds_src = Counter(_key(k, v) for k, v in rest_src.items())
    kinds_dst = Counter(_key(k, v) for k, v in rest_dst.items())
    shapes = lambda state: [tuple(t.shape) for t in state.values()]  # noqa: E731
    if kinds_src != kinds_dst:
        raise ValueError(
            f"the weights do not line up with the reference's: yours have shapes {shapes(dst)}, "
            f"the reference's {shapes(src)}")
    ambiguous = [kind for kind, count in kinds_dst.items() if count > 1]
    if ambiguous:
        raise _Ambiguous(
            f"your names differ from the reference's and {len(ambiguous)} kind(s) of tensor occur more than once "
            f"({', '.join(f'{name} {shape}' for name, shape in ambiguous)}), so the checker cannot tell which of "
            f"your layers is which: {_rename_hint(source, target, x)}, then check again")
    by_kind = {_key(k, v): k for k, v in rest_src.items()}
    pairs.update({k: by_kind[_key(k, v)] for k, v in rest_dst.items()})
    target.load_state_dict({k: src[pairs[k]] for k in dst})
    return "by name" if all(k == v for k, v in pairs.items()) else "by matching names and shapes"


class _Ambiguous(ValueError):
    """The weights could be copied in more than one way: the student must rename, not fix."""


def check_attention(student, reference, input_shape=(2, 16, 8, 8), atol=1e-5, seed=0, title=None):
    """Compare a student's attention module with a reference module of the same job.

    Checks, in order: it is an ``nn.Module``; its forward pass runs; the output has the input's
    shape; its ``gate`` submodule exists and gives values in [0, 1]; it has as many parameters
    as the reference; with the reference's weights copied in, it gives the reference's output;
    and gradients reach the input. Weights are copied by name, or, for layers named otherwise,
    by their kind and shape; when that leaves a choice, the report says which layers to rename.

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
    except KeyboardInterrupt:
        raise
    except BaseException as error:  # SystemExit from the student's code too
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
    elif recorded[0].isnan().any():
        report.add("gate", False, f"self.{gate_name} gave NaN: look for a division by zero or a log of 0 before it.")
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
        how = _copy_weights(reference, twin, x)
        with torch.no_grad():
            expected, got = reference(x.clone()), twin(x.clone())
        diff = (expected - got).abs().max().item()
        report.add("output", diff <= atol,
                   f"with the reference's weights (copied {how}) the largest difference is {diff:.2e}"
                   + ("" if diff <= atol else f" > {atol:.0e}: compare your forward with the equations"))
    except KeyboardInterrupt:
        raise
    except _Ambiguous as error:
        report.add("output", False, f"not compared yet: {error}.")
    except BaseException as error:
        report.add("output", False, f"could not compare with the reference: {_error_line(error)}")

    try:
        xg = x.clone().requires_grad_(True)
        out = student(xg)
        if not isinstance(out, torch.Tensor) or not out.requires_grad:
            report.add("gradient", False, "no gradient reaches the input: the output does not depend on it "
                       "through autograd. Avoid torch.no_grad(), .detach(), .item() or numpy in forward.")
        else:
            out.sum().backward()
            ok = xg.grad is not None and bool(xg.grad.abs().sum() > 0)
            report.add("gradient", ok, "reaches the input" if ok else
                       "no gradient reaches the input: avoid .detach(), .item() or numpy in forward")
    except KeyboardInterrupt:
        raise
    except BaseException as error:
        report.add("gradient", False, f"backward raised {_error_line(error)}")
    return report


def _plain(value):
    """A tensor as a NumPy array (detached, on the CPU); anything else unchanged."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return value


def _number(value):
    return isinstance(value, (int, float, np.number)) and not isinstance(value, (bool, np.bool_))


def _same(got, expected, rtol, atol):
    """Whether ``got`` equals ``expected``: numbers and arrays within tolerance (NaN equals NaN),
    containers element by element, anything else with ``==``."""
    got, expected = _plain(got), _plain(expected)
    if isinstance(expected, np.ndarray) or isinstance(got, np.ndarray):
        got, expected = np.asarray(got), np.asarray(expected)
        if got.shape != expected.shape:
            return False
        if "f" in got.dtype.kind + expected.dtype.kind and {got.dtype.kind, expected.dtype.kind} <= set("iuf"):
            return bool(np.allclose(got, expected, rtol=rtol, atol=atol, equal_nan=True))
        return bool(np.array_equal(got, expected))
    if isinstance(got, (int, np.integer)) and isinstance(expected, (int, np.integer)):
        return bool(got == expected)  # integers exactly, bools too
    if _number(got) and _number(expected):
        if math.isnan(got) or math.isnan(expected):
            return math.isnan(got) and math.isnan(expected)
        return math.isclose(got, expected, rel_tol=rtol, abs_tol=atol)
    if isinstance(expected, (list, tuple)) and isinstance(got, (list, tuple)):
        return len(got) == len(expected) and all(_same(a, b, rtol, atol) for a, b in zip(got, expected))
    if isinstance(expected, dict) and isinstance(got, dict):
        return got.keys() == expected.keys() and all(_same(got[k], expected[k], rtol, atol) for k in expected)
    try:
        return bool(got == expected)
    except Exception:  # e.g. an object whose == has no single truth value: not the same
        return False


def check_function(student_fn, reference_fn, cases, title=None, rtol=1e-6, atol=1e-9):
    """Compare ``student_fn(*args)`` with ``reference_fn(*args)`` for every ``args`` in ``cases``.

    Numbers, tensors and arrays agree within ``rtol`` and ``atol`` (so ``29.000000000000004``
    equals ``29.0``), NaN agrees with NaN, and lists, tuples and dicts agree element by element.
    ``cases`` is any iterable of argument tuples (or single arguments); it must not be empty.
    """
    cases = list(cases)  # a generator too
    if not cases:
        raise ValueError("check_function got no cases: pass at least one argument tuple, e.g. [(16,), (64,)].")
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
        except KeyboardInterrupt:
            raise
        except BaseException as error:  # SystemExit from the student's code too
            report.add("runs", False, f"{call} raised {_error_line(error)}")
            return report
        if not _same(got, expected, rtol, atol):
            wrong.append(f"{call} = {got!r}, expected {expected!r}")
    report.add("values", not wrong, f"all {len(cases)} cases agree" if not wrong else
               f"{len(wrong)} of {len(cases)} cases differ, e.g. " + "; ".join(wrong[:3]))
    return report
