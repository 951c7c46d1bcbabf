"""attn_course.explore: the static figure draws exactly the settings asked for, the widget redraws."""

import matplotlib
import pytest

from attn_course.explore import Explorer

matplotlib.use("Agg")


def _recorder():
    calls = []

    def draw(fig, stage, digit):
        ax = fig.subplots()
        ax.plot([stage, digit])
        calls.append((stage, digit))

    return draw, calls


def test_static_draws_each_setting_once_in_its_own_panel():
    draw, calls = _recorder()
    explorer = Explorer(draw, figsize=(3, 2), stage=[1, 2, 3], digit=range(10))
    fig = explorer.static([{"stage": 1, "digit": 3}, {"stage": 3, "digit": 7}])
    assert calls == [(1, 3), (3, 7)]
    assert len(fig.subfigs) == 2
    assert [sub.get_suptitle() for sub in fig.subfigs] == ["stage 1, digit 3", "stage 3, digit 7"]
    assert fig.get_figwidth() == pytest.approx(6.0)


def test_static_figure_is_at_most_nine_inches_wide():
    draw, _ = _recorder()
    fig = Explorer(draw, figsize=(4, 3), stage=[1, 2, 3], digit=[0]).static(
        [{"stage": s, "digit": 0} for s in (1, 2, 3)])
    assert fig.get_figwidth() == pytest.approx(9.0)


def test_labels_name_pairs():
    draw, _ = _recorder()
    explorer = Explorer(draw, stage=[("first", 1), ("last", 3)], digit=[0])
    assert explorer.label({"stage": 3, "digit": 0}) == "stage last, digit 0"


@pytest.mark.parametrize("setting, message", [
    ({"stage": 4, "digit": 3}, r"stage=4 is not one of the widget's choices \(1, 2, 3\)"),
    ({"stage": 1}, r"missing: digit"),
    ({"stage": 1, "digit": 3, "layer": 2}, r"unknown: layer"),
    ("stage 1", r"each setting is a dict"),
])
def test_static_refuses_settings_the_widget_cannot_reach(setting, message):
    draw, calls = _recorder()
    with pytest.raises((ValueError, TypeError), match=message):
        Explorer(draw, stage=[1, 2, 3], digit=range(10)).static([setting])
    assert calls == []


@pytest.mark.parametrize("kwargs, message", [
    ({"layer": [1]}, r"draw has no argument 'layer'"),
    ({"stage": "123"}, r"must be a list or tuple of choices"),
    ({"stage": []}, r"has no choices"),
    ({"stage": range(0)}, r"empty range"),
    ({"stage": range(3, 0, -1)}, r"decreasing range; give it increasing, e.g. range\(1, 4\)"),
    ({}, r"at least one control"),
])
def test_bad_controls_get_clear_errors(kwargs, message):
    draw, _ = _recorder()
    with pytest.raises((ValueError, TypeError), match=message):
        Explorer(draw, **kwargs)


def test_widget_builds_a_slider_for_ranges_and_a_dropdown_otherwise_and_redraws():
    ipywidgets = pytest.importorskip("ipywidgets")
    draw, calls = _recorder()
    widget = Explorer(draw, stage=[("first", 1), ("last", 3)], digit=range(0, 10, 2)).widget()
    controls, picture = widget.children
    sliders = [c for c in controls.children if isinstance(c, ipywidgets.IntSlider)]
    dropdowns = [c for c in controls.children if isinstance(c, ipywidgets.Dropdown)]
    assert [(s.description, s.min, s.max, s.step) for s in sliders] == [("digit", 0, 8, 2)]
    assert [d.description for d in dropdowns] == ["stage"]
    assert calls == [(1, 0)] and picture.value.startswith('<img src="data:image/png;base64,')
    first = picture.value
    sliders[0].value = 6
    assert calls[-1] == (1, 6) and picture.value != first
    dropdowns[0].value = 3
    assert calls[-1] == (3, 6)


def test_widget_needs_no_front_end():
    """No Output widget, no clear_output, no binary buffers: nbval's executed copy can keep it."""
    pytest.importorskip("ipywidgets")
    draw, _ = _recorder()
    widget = Explorer(draw, stage=[1, 2], digit=[0]).widget()
    kinds = set()

    def walk(w):
        kinds.add(type(w).__name__)
        for child in getattr(w, "children", ()):
            walk(child)

    walk(widget)
    assert "Output" not in kinds and kinds <= {"VBox", "HBox", "Dropdown", "IntSlider", "HTML"}
    assert isinstance(widget.children[1].value, str)
