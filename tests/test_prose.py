"""attn_course.prose: values glued for the book are plain Python numbers, stored as MyST-NB stores them,
and say() prints its sentence."""

import numpy as np
import pytest
import torch

from attn_course import prose


@pytest.mark.parametrize("value, expected, kind", [
    (np.float32(0.5), 0.5, float), (np.int64(3), 3, int), (torch.tensor(0.25), 0.25, float),
    (torch.tensor(7), 7, int), (0.125, 0.125, float), ("text", "text", str),
])
def test_glue_returns_plain_python_values(value, expected, kind):
    out = prose.glue("name", value)
    assert out == expected and type(out) is kind
    assert f"{prose.glue('x', np.float64(0.12345)):.2f}" == "0.12"


@pytest.fixture
def kernel(monkeypatch):
    """Pretend to run inside a Jupyter kernel and collect what glue publishes."""
    published = []
    monkeypatch.setattr("IPython.get_ipython", lambda: object())
    monkeypatch.setattr(prose, "_display", lambda bundle, metadata: published.append((bundle, metadata)))
    return published


def test_glue_publishes_the_output_myst_nb_reads(kernel):
    prose.glue("acc", np.float32(0.75))
    ((bundle, metadata),) = kernel
    assert bundle == {"application/papermill.record/text/plain": "0.75"}
    assert metadata["scrapbook"] == {"name": "acc", "mime_prefix": "application/papermill.record/"}


def test_glue_publishes_exactly_what_myst_nb_glue_does(kernel, monkeypatch):
    glue_module = pytest.importorskip("myst_nb.ext.glue")
    theirs = []
    monkeypatch.setattr(glue_module, "ipy_display", lambda bundle, raw, metadata: theirs.append((bundle, metadata)))
    for name, value in [("a", 0.125), ("b", 42), ("c", "SE changes test accuracy by +0.3 points.")]:
        prose.glue(name, value)
        glue_module.glue(name, value, display=False)
    assert kernel == theirs
    assert glue_module.GLUE_PREFIX == prose.GLUE_PREFIX


def test_outside_a_kernel_glue_publishes_nothing(monkeypatch):
    monkeypatch.setattr("IPython.get_ipython", lambda: None)  # as in plain Python (tests may have made a shell)
    monkeypatch.setattr(prose, "_display", lambda *a: pytest.fail("published outside a kernel"))
    assert prose.glue("x", 1.5) == 1.5


def test_say_prints_the_sentence_for_jupyter_readers(capsys):
    assert prose.say("s", "SE changes test accuracy by +0.3 points.") == "SE changes test accuracy by +0.3 points."
    assert capsys.readouterr().out == "SE changes test accuracy by +0.3 points.\n"
    with pytest.raises(TypeError, match="use glue"):
        prose.say("s", 0.3)
