"""Numbers for the prose: glue a computed value into the book, and show it in Jupyter and Colab too.

The book's prose inserts values with MyST-NB's ``{glue:text}`name:.1f``` role, so the text
cannot drift from what the notebook computes. :func:`glue` stores a value the way MyST-NB's own
``myst_nb.glue(name, value, display=False)`` does (a hidden display output of the cell), without
needing MyST-NB where the notebook runs: nbval's runs, which the book renders in CI, glue too.
In Jupyter and Colab the role shows raw, so :func:`say` also prints the sentence for those readers.
"""

import numbers

# The output type MyST-NB reads glued values from (myst_nb.ext.glue.GLUE_PREFIX).
GLUE_PREFIX = "application/papermill.record/"


def _plain(value):
    """A Python number for a numpy or torch scalar: MyST-NB's format specs fail on numpy scalars."""
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    return value


def _display(bundle, metadata):
    from IPython.display import display

    display(bundle, raw=True, metadata=metadata)


def glue(name, value):
    """Store ``value`` under ``name`` for the book's ``{glue:text}`` roles; return it as a plain value.

    Inside a Jupyter kernel this publishes the hidden output that MyST-NB reads; in plain Python
    (no kernel) there is nowhere to store it and this only returns the value.
    """
    value = _plain(value)
    try:
        from IPython import get_ipython
        from IPython.core.formatters import format_display_data
    except ImportError:  # no IPython at all: not a notebook
        return value
    if get_ipython() is None:
        return value
    bundle, metadata = format_display_data(value)
    metadata["scrapbook"] = {"name": name, "mime_prefix": GLUE_PREFIX}
    _display({GLUE_PREFIX + kind: data for kind, data in bundle.items()}, metadata)
    return value


def say(name, sentence):
    """Glue a sentence for the book (``{glue:text}`name```) and print it for Jupyter and Colab readers."""
    if not isinstance(sentence, str):
        raise TypeError(f"say() takes a sentence (str), got {type(sentence).__name__}; use glue() for numbers.")
    print(sentence)
    return glue(name, sentence)
