"""Explorers: one drawing function, shown live with ipywidgets or as a static figure for the book.

A chapter's explorer lets the reader move the thing the chapter is about (a stage, a class, an
extent, a query point) and see the attention change. The same ``draw`` function serves both views:

- :meth:`Explorer.widget` puts controls above the figure; in Jupyter and Colab each change redraws it.
- :meth:`Explorer.static` draws a few chosen settings side by side in one figure. The HTML book
  cannot run Python, so this is what stands in for the widget there (the widget cell carries the
  tag ``remove-output``: the book shows its code, not an empty widget).

``draw(fig, **values)`` draws into ``fig``, a :class:`matplotlib.figure.Figure` or a subfigure
(both have ``subplots``, ``add_subplot`` and ``suptitle``), and returns nothing. ``controls`` map
each argument of ``draw`` to its choices: a list or tuple of values (a drop-down; ``(label,
value)`` pairs name them), or ``range(...)`` (a slider over those integers).

Example::

    def draw(fig, stage, digit):
        ax = fig.subplots()
        ax.imshow(maps[stage][digit])

    explorer = Explorer(draw, stage=[1, 2, 3], digit=range(10))
    explorer.static([{"stage": 1, "digit": 3}, {"stage": 3, "digit": 3}])   # the book's figure
    explorer.widget()                                                      # live, in Jupyter
"""

import base64
import inspect
import io

import matplotlib.pyplot as plt
from matplotlib.figure import Figure


def _choices(name, options):
    """The values a control can take, as a list of (label, value); a clear error for anything else."""
    if isinstance(options, range):
        if len(options) == 0:
            raise ValueError(f"Explorer: control {name!r} is an empty range.")
        if options.step < 0:
            raise ValueError(f"Explorer: control {name!r} is a decreasing range; give it increasing, "
                             f"e.g. range({options[-1]}, {options[0] + 1}).")
        return [(str(v), v) for v in options]
    if isinstance(options, (str, bytes)) or not isinstance(options, (list, tuple)):
        raise TypeError(f"Explorer: control {name!r} must be a list or tuple of choices, or a range of integers; "
                        f"got {type(options).__name__}. E.g. {name}=[1, 2, 3] or {name}=range(10).")
    if not options:
        raise ValueError(f"Explorer: control {name!r} has no choices.")
    pairs = []
    for option in options:
        if isinstance(option, tuple) and len(option) == 2 and isinstance(option[0], str):
            pairs.append(option)
        else:
            pairs.append((str(option), option))
    return pairs


class Explorer:
    """A drawing function and its controls; see the module docstring."""

    def __init__(self, draw, figsize=(6.0, 3.0), **controls):
        if not callable(draw):
            raise TypeError(f"Explorer: draw must be a function draw(fig, **values), got {type(draw).__name__}.")
        if not controls:
            raise ValueError("Explorer: give at least one control, e.g. Explorer(draw, stage=[1, 2, 3]).")
        parameters = inspect.signature(draw).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
        unknown = [name for name in controls if name not in parameters and not takes_any]
        if unknown:
            raise TypeError(f"Explorer: draw has no argument {', '.join(map(repr, unknown))}; its arguments are "
                            f"{', '.join(parameters)}. Name each control after an argument of draw.")
        self.draw = draw
        self.figsize = tuple(figsize)
        self.controls = {name: _choices(name, options) for name, options in controls.items()}
        self._sliders = {name: options for name, options in controls.items() if isinstance(options, range)}

    def _check(self, setting):
        if not isinstance(setting, dict):
            raise TypeError(f"Explorer.static: each setting is a dict of control values, got {setting!r}.")
        missing = [name for name in self.controls if name not in setting]
        extra = [name for name in setting if name not in self.controls]
        if missing or extra:
            raise ValueError(f"Explorer.static: the setting {setting} must give exactly the controls "
                             f"{', '.join(self.controls)} (missing: {', '.join(missing) or 'none'}; "
                             f"unknown: {', '.join(extra) or 'none'}).")
        for name, value in setting.items():
            if not any(value == v for _, v in self.controls[name]):
                labels = ", ".join(label for label, _ in self.controls[name])
                raise ValueError(f"Explorer.static: {name}={value!r} is not one of the widget's choices "
                                 f"({labels}); the book's figure must show settings a reader can reach.")

    def label(self, setting):
        """A setting as the widget names it, e.g. ``stage 3, digit 7``."""
        parts = []
        for name, value in setting.items():
            label = next(lbl for lbl, v in self.controls[name] if v == value)
            parts.append(f"{name} {label}")
        return ", ".join(parts)

    def static(self, settings, title=None):
        """Draw each setting (a dict of control values) side by side in one figure; return the figure."""
        settings = list(settings)
        if not settings:
            raise ValueError("Explorer.static: give at least one setting to draw.")
        for setting in settings:
            self._check(setting)
        width, height = self.figsize
        scale = min(1.0, 9.0 / (width * len(settings)))  # the book's figures are at most 9 in wide
        fig = plt.figure(figsize=(width * len(settings) * scale, height * scale + 0.3), layout="constrained")
        panels = fig.subfigures(1, len(settings), squeeze=False)[0]
        for panel, setting in zip(panels, settings):
            self.draw(panel, **setting)
            panel.suptitle(self.label(setting), fontsize=10)
        if title:
            fig.suptitle(title, fontsize=11)
        return fig

    def widget(self, dpi=72):
        """The live explorer: controls above the figure they redraw (needs ipywidgets and a Jupyter front end).

        The figure is a PNG inside an HTML widget, redrawn whenever a control changes: no Output
        widget, no ``clear_output`` and no binary buffers, so a notebook executed without a
        front end (nbclient, nbval) stores the widget whole, and the book can reuse it.
        """
        try:
            import ipywidgets
        except ImportError:
            raise ImportError("Explorer.widget needs ipywidgets: pip install ipywidgets (or use "
                              "Explorer.static for a fixed figure).") from None

        controls = {}
        for name, pairs in self.controls.items():
            if name in self._sliders:
                steps = self._sliders[name]
                controls[name] = ipywidgets.IntSlider(value=steps[0], min=steps[0], max=steps[-1], step=steps.step,
                                                      description=name, continuous_update=False)
            else:
                controls[name] = ipywidgets.Dropdown(options=pairs, value=pairs[0][1], description=name)
        picture = ipywidgets.HTML()

        def redraw(change=None):
            fig = Figure(figsize=self.figsize, layout="constrained")  # not pyplot: nothing is displayed twice
            self.draw(fig, **{name: control.value for name, control in controls.items()})
            png = io.BytesIO()
            fig.savefig(png, format="png", dpi=dpi)
            data = base64.b64encode(png.getvalue()).decode()
            picture.value = f'<img src="data:image/png;base64,{data}" alt="the explorer\'s figure">'

        for control in controls.values():
            control.observe(redraw, names="value")
        redraw()
        return ipywidgets.VBox([ipywidgets.HBox(list(controls.values())), picture])
