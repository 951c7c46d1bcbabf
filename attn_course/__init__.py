"""attn_course: the helper package of the attn-course book on attention in CNNs.

Modules, one job each: ``attention`` (the mechanisms and their registry), ``data`` (Cluttered
Digits), ``models`` (a small ResNet with attention slots), ``train`` (seeding, devices, ``fit``),
``metrics``, ``explain`` (Grad-CAM), ``viz``, ``checks`` (the exercise checker) and ``bench``.
"""

from .attention import ATTENTION, create_attention

__version__ = "0.1.0"
__all__ = ["ATTENTION", "create_attention", "__version__"]
