"""Numbers for the prose: glue a computed value into the book, and show it in Jupyter and Colab too.

The book's prose inserts values with MyST-NB's ``{glue:text}`name:.1f``` role, so the text
cannot drift from what the notebook computes. MyST-NB is part of the book build only: in Jupyter
and Colab the role shows raw, so :func:`say` also prints the sentence for those readers.
"""

import numbers


def _plain(value):
    """A Python number for a numpy or torch scalar: MyST-NB's format specs fail on numpy scalars."""
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    return value


def glue(name, value):
    """Store ``value`` under ``name`` for the book's ``{glue:text}`` roles; return it as a plain value.

    Outside a MyST-NB build (Jupyter, Colab, the tests) there is nothing to store into and this
    only returns the value: the book build itself fails on a role whose name was never glued.
    """
    value = _plain(value)
    try:
        from myst_nb import glue as myst_glue
    except ImportError:  # not building the book: nothing to glue into
        return value
    myst_glue(name, value, display=False)
    return value


def say(name, sentence):
    """Glue a sentence for the book (``{glue:text}`name```) and print it for Jupyter and Colab readers."""
    if not isinstance(sentence, str):
        raise TypeError(f"say() takes a sentence (str), got {type(sentence).__name__}; use glue() for numbers.")
    print(sentence)
    return glue(name, sentence)
