"""Cluttered Digits: one handwritten digit on a larger canvas among fragments of other digits.

Built from scikit-learn's bundled 8x8 digits (``sklearn.datasets.load_digits``: 1,797 real
digits, no download), in the spirit of the cluttered MNIST of Mnih et al., "Recurrent Models of
Visual Attention", NeurIPS 2014, https://arxiv.org/abs/1406.6247.

Every sample carries its label, the digit's bounding box and its pixel mask, so attention maps
can be scored against ground truth. The glyph pool is split once, with a fixed seed, so that no
test glyph (digit or clutter) is ever seen in training. The bundled digits come from only 13
writers, so the split is glyph-disjoint, not writer-disjoint: test digits are new glyphs, not
new hands.
"""

import numbers
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

GLYPH_SIZE = 8  # the sklearn digits are 8 x 8
INK_THRESHOLD = 0.3  # a pixel of the upscaled glyph at or above this belongs to the digit's mask
SPLIT_SEED = 2014  # fixes which glyphs are train and which are test, for every user seed
TEST_FRACTION = 0.3


@dataclass
class ClutteredDigits(Dataset):
    """An in-memory data set of cluttered digits; indexing gives ``(image, label)``.

    Attributes:
        images: (N, 1, H, W) float32 in [0, 1].
        labels: (N,) int64, the digit 0-9.
        boxes: (N, 4) int64 bounding boxes ``(x0, y0, x1, y1)``, end exclusive.
        masks: (N, H, W) bool, the target digit's pixels (clutter excluded).
        glyphs: (N,) int64, the index of each target digit in its split's glyph pool
            (:func:`glyph_pools`), e.g. to count the distinct handwritten digits a set holds; None
            for data sets built by hand.
    """

    images: torch.Tensor
    labels: torch.Tensor
    boxes: torch.Tensor
    masks: torch.Tensor
    glyphs: torch.Tensor | None = None

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return self.images[index], self.labels[index]

    def segmentation_targets(self):
        """Per-pixel classes (N, H, W): 0 for background and clutter, ``digit + 1`` on the digit."""
        return torch.where(self.masks, self.labels[:, None, None] + 1, 0)


@lru_cache(maxsize=8)
def glyph_pools(scale=2):
    """The glyph pools: ``{"train": (glyphs, labels), "test": (glyphs, labels)}``.

    Glyphs are the 8 x 8 digits upscaled by ``scale`` (float32 arrays in [0, 1]); the split is
    stratified by class and fixed by ``SPLIT_SEED``, so it is the same for every user seed.
    The result is cached: treat the arrays as read-only.
    """
    if not _is_int(scale) or scale < 1:
        raise ValueError(f"scale must be an int >= 1 (the glyphs are 8 x 8 pixels times scale), got {scale!r}.")
    from sklearn.datasets import load_digits

    digits = load_digits()
    glyphs = torch.from_numpy(digits.images.astype(np.float32) / 16.0)[:, None]  # (1797, 1, 8, 8)
    size = GLYPH_SIZE * scale
    glyphs = F.interpolate(glyphs, size=(size, size), mode="bilinear", align_corners=False)
    glyphs = glyphs[:, 0].clamp(0, 1).numpy()  # (1797, 8s, 8s)
    labels = digits.target.astype(np.int64)

    # Stratified split: the same share of every class goes to the test pool.
    rng = np.random.default_rng(SPLIT_SEED)
    is_test = np.zeros(len(labels), dtype=bool)
    for digit in range(10):
        members = rng.permutation(np.flatnonzero(labels == digit))
        is_test[members[: round(TEST_FRACTION * len(members))]] = True
    return {
        "train": (glyphs[~is_test], labels[~is_test]),
        "test": (glyphs[is_test], labels[is_test]),
    }


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_arguments(n, split, canvas_size, scale, n_clutter, fragment_size, ink, noise, seed):
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
    for name, value, minimum in (("n", n, 1), ("canvas_size", canvas_size, 1), ("scale", scale, 1),
                                 ("n_clutter", n_clutter, 0), ("fragment_size", fragment_size, 0)):
        if not _is_int(value) or value < minimum:
            raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}.")
    digit_size = GLYPH_SIZE * scale
    if canvas_size < digit_size:
        raise ValueError(
            f"canvas_size={canvas_size} is smaller than the digit ({GLYPH_SIZE} px x scale {scale}"
            f" = {digit_size} px). Use canvas_size >= {digit_size}, or a smaller scale."
        )
    if not 1 <= fragment_size <= digit_size:
        raise ValueError(
            f"fragment_size must be between 1 and the digit size ({digit_size} px), got {fragment_size}."
        )
    if isinstance(ink, bool) or not isinstance(ink, numbers.Real) or not 0 < ink <= 1:
        raise ValueError(f"ink must be a number in (0, 1], the brightness of the digit's strokes, got {ink!r}.")
    if isinstance(noise, bool) or not isinstance(noise, numbers.Real) or not noise >= 0:
        raise ValueError(f"noise must be a number >= 0, the standard deviation of the pixel noise, got {noise!r}.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}.")


def make_cluttered_digits(
    n, split="train", canvas_size=32, scale=2, n_clutter=6, fragment_size=6, ink=1.0, noise=0.0, seed=0
):
    """Generate ``n`` Cluttered Digits samples, deterministically from ``seed``.

    Args:
        n: number of samples.
        split: ``"train"`` or ``"test"``; the two draw digits and clutter from disjoint glyphs.
        canvas_size: side of the square canvas in pixels.
        scale: integer upscaling of the 8 x 8 glyphs (the digit is ``8 * scale`` pixels wide).
        n_clutter: number of clutter fragments per image; they never overlap the digit's box.
        fragment_size: side of each square clutter fragment, cut from another glyph.
        ink: brightness of the target digit's strokes (the clutter keeps full brightness); below 1
            the digit is fainter than the fragments around it.
        noise: standard deviation of Gaussian pixel noise added last, then clipped to [0, 1].
        seed: seed of the positions, digits, fragments and noise.

    Returns:
        A :class:`ClutteredDigits` data set.
    """
    _check_arguments(n, split, canvas_size, scale, n_clutter, fragment_size, ink, noise, seed)
    sizes = (n, canvas_size, scale, n_clutter, fragment_size, seed)
    n, canvas_size, scale, n_clutter, fragment_size, seed = map(int, sizes)  # numpy ints too
    glyphs, glyph_labels = glyph_pools(scale)[split]
    # Different streams for train and test, so seed=0 gives unrelated samples in each split.
    rng = np.random.default_rng([seed, 0 if split == "train" else 1])
    digit_size = GLYPH_SIZE * scale
    ink_mask = glyphs >= INK_THRESHOLD  # (G, d, d)

    chosen = rng.integers(0, len(glyphs), size=n)
    tops = rng.integers(0, canvas_size - digit_size + 1, size=n)
    lefts = rng.integers(0, canvas_size - digit_size + 1, size=n)

    # Tight box of each glyph's ink inside its d x d square, then moved onto the canvas.
    rows_with_ink, cols_with_ink = ink_mask.any(axis=2), ink_mask.any(axis=1)  # (G, d) each
    first_row, last_row = rows_with_ink.argmax(1), digit_size - rows_with_ink[:, ::-1].argmax(1)
    first_col, last_col = cols_with_ink.argmax(1), digit_size - cols_with_ink[:, ::-1].argmax(1)
    boxes = np.stack(
        [lefts + first_col[chosen], tops + first_row[chosen], lefts + last_col[chosen], tops + last_row[chosen]],
        axis=1,
    )

    # Clutter: for every fragment try 16 random positions and keep the first one off the box.
    tries = 16
    pos = rng.integers(0, canvas_size - fragment_size + 1, size=(n, n_clutter, tries, 2))  # (y, x)
    b = boxes[:, None, None, :]
    overlaps = (
        (pos[..., 1] < b[..., 2]) & (pos[..., 1] + fragment_size > b[..., 0])
        & (pos[..., 0] < b[..., 3]) & (pos[..., 0] + fragment_size > b[..., 1])
    )  # (n, n_clutter, tries)
    free = ~overlaps
    first_free = free.argmax(axis=2)
    placed = free.any(axis=2)  # a fragment with no free position is dropped
    frag_pos = np.take_along_axis(pos, first_free[..., None, None], axis=2)[:, :, 0]  # (n, k, 2)
    frag_glyph = rng.integers(0, len(glyphs), size=(n, n_clutter))
    frag_offset = rng.integers(0, digit_size - fragment_size + 1, size=(n, n_clutter, 2))

    images = np.zeros((n, canvas_size, canvas_size), dtype=np.float32)
    masks = np.zeros((n, canvas_size, canvas_size), dtype=bool)
    f = fragment_size
    for i in range(n):
        t, l, g = tops[i], lefts[i], chosen[i]
        images[i, t : t + digit_size, l : l + digit_size] = glyphs[g] * ink
        masks[i, t : t + digit_size, l : l + digit_size] = ink_mask[g]
        for k in np.flatnonzero(placed[i]):
            (y, x), (oy, ox) = frag_pos[i, k], frag_offset[i, k]
            patch = glyphs[frag_glyph[i, k], oy : oy + f, ox : ox + f]
            np.maximum(images[i, y : y + f, x : x + f], patch, out=images[i, y : y + f, x : x + f])

    if noise > 0:  # drawn last, so that noise=0 gives exactly the images of earlier versions
        images = np.clip(images + rng.normal(0.0, noise, size=images.shape).astype(np.float32), 0.0, 1.0)

    return ClutteredDigits(
        images=torch.from_numpy(images)[:, None],
        labels=torch.from_numpy(glyph_labels[chosen]),
        boxes=torch.from_numpy(boxes.astype(np.int64)),
        masks=torch.from_numpy(masks),
        glyphs=torch.from_numpy(chosen.astype(np.int64)),
    )


def make_loaders(n_train=4000, n_test=1000, batch_size=128, seed=0, **data_kwargs):
    """Train and test :class:`~torch.utils.data.DataLoader` over fresh Cluttered Digits.

    The train loader shuffles with its own generator seeded from ``seed``, so two runs with the
    same seed see the same batches. Extra keyword arguments go to :func:`make_cluttered_digits`.
    """
    train = make_cluttered_digits(n_train, "train", seed=seed, **data_kwargs)
    test = make_cluttered_digits(n_test, "test", seed=seed, **data_kwargs)
    return loaders_for(train, test, batch_size, seed)


def loaders_for(train, test, batch_size=128, seed=0):
    """Loaders over two data sets: ``train`` shuffled by a generator seeded from ``seed``, ``test`` in order.

    A last training batch of a single image is dropped: BatchNorm over pooled (1 x 1) features
    cannot normalise one value, and one image would move the running statistics alone.
    """
    generator = torch.Generator().manual_seed(seed)
    return (
        DataLoader(train, batch_size=batch_size, shuffle=True, generator=generator,
                   drop_last=len(train) % batch_size == 1),
        DataLoader(test, batch_size=512, shuffle=False),
    )
