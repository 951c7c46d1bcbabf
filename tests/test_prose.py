"""attn_course.prose: values glued for the book are plain Python numbers, and say() prints its sentence."""

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


def test_glue_stores_into_myst_nb_when_it_is_there(monkeypatch):
    import sys
    import types

    stored = {}
    fake = types.ModuleType("myst_nb")
    fake.glue = lambda name, value, display: stored.update({name: (value, display)})  # noqa: E731
    monkeypatch.setitem(sys.modules, "myst_nb", fake)
    prose.glue("acc", np.float32(0.75))
    assert stored == {"acc": (0.75, False)} and type(stored["acc"][0]) is float


def test_say_prints_the_sentence_for_jupyter_readers(capsys):
    assert prose.say("s", "SE changes test accuracy by +0.3 points.") == "SE changes test accuracy by +0.3 points."
    assert capsys.readouterr().out == "SE changes test accuracy by +0.3 points.\n"
    with pytest.raises(TypeError, match="use glue"):
        prose.say("s", 0.3)
