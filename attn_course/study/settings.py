"""The study's fixed vocabulary: data settings, training budgets, the zoo table and the grids.

Every chapter's illustrative run and every row of the study use these, so that a number in one
chapter can be compared with a number in another. Change a value here and every stored result
made with the old value stops reproducing: re-run the grids (``python -m attn_course.study run``).
"""

import hashlib
import json
from dataclasses import asdict, dataclass, field

from ..attention import ATTENTION


@dataclass(frozen=True)
class Setting:
    """A Cluttered Digits setting: keyword arguments of :func:`attn_course.data.make_cluttered_digits`."""

    name: str
    description: str
    data: dict = field(default_factory=dict)
    # A test setting of the ``shift`` grid: the models train on the setting ``train_on`` and are
    # only tested on this one (same weights for every test setting). None: train and test here.
    train_on: str | None = None

    @property
    def training_setting(self):
        """The name of the setting whose training images a run on this setting trains on."""
        return self.train_on or self.name


@dataclass(frozen=True)
class Budget:
    """How long a model trains: epochs over ``n_train`` images, scored on ``n_test`` test images.

    The optimiser is :func:`attn_course.train.fit`'s: AdamW with a one-cycle schedule peaking at ``lr``.

    ``steps`` (None for most budgets) fixes the number of optimisation steps instead: the run
    takes exactly ``steps`` steps of ``batch_size`` images, cycling over the ``n_train`` images
    (reshuffled at each pass), in ``epochs`` rounds of ``steps // epochs`` steps; the test set is
    scored after each round, so ``epochs`` is then the number of points of the test curve, not
    of passes over the data. The ``data-size`` grid uses it (see :data:`GRIDS`).
    """

    name: str
    description: str
    epochs: int
    n_train: int
    n_test: int
    batch_size: int = 128
    lr: float = 3e-3
    steps: int | None = None

    def __post_init__(self):
        if self.steps is not None and (self.steps < self.epochs or self.steps % self.epochs):
            raise ValueError(f"budget {self.name!r}: steps ({self.steps}) must be a multiple of epochs "
                             f"({self.epochs}), the number of rounds after which the test set is scored.")

    @property
    def steps_per_round(self):
        """Optimisation steps between two test evaluations (None: one pass over the data, an epoch)."""
        return None if self.steps is None else self.steps // self.epochs

    def loader_kwargs(self):
        """Keyword arguments of :func:`attn_course.data.make_loaders` for this budget."""
        return {"n_train": self.n_train, "n_test": self.n_test, "batch_size": self.batch_size}


@dataclass(frozen=True)
class ZooEntry:
    """One model of the study: an attention from the registry, its arguments and where it sits.

    ``attention=None`` is the plain ResNet. ``stages`` counts the small ResNet's stages from 1
    (None: every stage); ``why`` says why the arguments differ from the paper's, where they do.
    """

    attention: str | None
    kwargs: dict = field(default_factory=dict)
    stages: tuple | None = None
    why: str = ""
    task: str | None = None  # None: classify (or chapter 05's heads); "detect": chapter 11; "unet": chapter 12

    def model_kwargs(self, with_stages=True):
        """Keyword arguments of :class:`attn_course.models.ResNet` for this entry (``stages`` left out
        for networks with one attention slot, such as :class:`attn_course.segmentation.SegmentationNet`)."""
        if self.attention is None:
            return {}
        return {"attention": self.attention, **({"stages": self.stages} if with_stages else {}), **self.kwargs}


SETTINGS = {
    "default": Setting(
        "default",
        "the chapters' data: a 32 x 32 canvas, 6 clutter fragments of 6 px, no noise",
        {},
    ),
    "headroom": Setting(
        "headroom",
        "the default clutter (6 fragments of 6 px) around a digit drawn at half size, 8 x 8 px, no "
        "larger than the fragments: the plain ResNet stays clearly below ceiling, and its Grad-CAM "
        "misses the digit more often",
        {"scale": 1},
    ),
    # The shift grid's test settings: models trained on "default" and tested here, unchanged.
    # One change from "default" each (make_cluttered_digits' defaults: canvas 32, 6 fragments of 6 px).
    "shift-clutter": Setting(
        "shift-clutter", "test only (trained on default): 16 clutter fragments of 6 px instead of 6",
        {"n_clutter": 16}, train_on="default",
    ),
    "shift-canvas": Setting(
        "shift-canvas", "test only (trained on default): a 48 x 48 canvas instead of 32 x 32, the same 16 px "
        "digit and 6 fragments (so the digit is smaller in the image and the clutter sparser)",
        {"canvas_size": 48}, train_on="default",
    ),
    "shift-fragment": Setting(
        "shift-fragment", "test only (trained on default): 6 clutter fragments of 10 px instead of 6 px "
        "(larger pieces of other digits, closer to whole strokes)",
        {"fragment_size": 10}, train_on="default",
    ),
    "shift-noise": Setting(
        "shift-noise", "test only (trained on default): Gaussian pixel noise, sigma = 0.2, on the default "
        "images",
        {"noise": 0.2}, train_on="default",
    ),
}

# The data-size grid's budgets: one number of optimisation steps for every training-set size.
# Fixed steps, not fixed epochs: with fixed epochs a set 32 times smaller would get 32 times
# fewer steps, and the curve would measure under-training, not overfitting; with fixed steps a
# small set is seen many times (625 steps of 64 images are 160 passes over 250 images, and can be
# memorised) and a large set gets no more compute than a small one. 625 steps is the long
# budget's compute (20 epochs x 2,000 images / 64 = 625; long itself takes 20 x 32 = 640 steps,
# since its last batch of each epoch is short), long enough for the plain ResNet to converge.
# The test set (1,000 images) is scored after each of 25 rounds of 25 steps.
DATA_SIZE_STEPS, DATA_SIZE_ROUNDS = 625, 25
DATA_SIZES = (250, 500, 1000, 2000, 4000, 8000)

BUDGETS = {
    "chapter": Budget(
        "chapter", "the one short run every chapter trains (baseline and its mechanism, within the chapter's "
        "45 s on a 2-core CPU)",
        epochs=3, n_train=2000, n_test=1000, batch_size=64,
    ),
    "long": Budget(
        "long", "the same data, trained until the plain ResNet's test accuracy has stopped improving",
        epochs=20, n_train=2000, n_test=1000, batch_size=64,
    ),
    "segmentation": Budget(
        "segmentation", "chapter 05's run: per-pixel classes, a small encoder-decoder (attn_course.segmentation)",
        epochs=3, n_train=2000, n_test=1000, batch_size=64,
    ),
    **{f"data-{n}": Budget(
        f"data-{n}", f"{n} training images, {DATA_SIZE_STEPS} steps of 64 whatever the size "
        f"({DATA_SIZE_STEPS * 64 / n:.3g} passes over the images): the data-size grid",
        epochs=DATA_SIZE_ROUNDS, n_train=n, n_test=1000, batch_size=64, steps=DATA_SIZE_STEPS,
    ) for n in DATA_SIZES},
    "detection": Budget(
        "detection", "chapter 11's run: one class and one box per image, the small ResNet with a centre-and-box "
        "head (attn_course.detection)",
        epochs=3, n_train=2000, n_test=1000, batch_size=64,
    ),
    "unet": Budget(
        "unet", "chapter 12's run: per-pixel classes, a small U-Net with or without attention gates "
        "(attn_course.unet); peak learning rate 1e-2, since at 3e-3 the U-Net still predicts background "
        "almost everywhere after 3 epochs",
        epochs=3, n_train=2000, n_test=1000, batch_size=64, lr=1e-2,
    ),
}

# The mechanisms on the course's small ResNet (3 stages of 16, 32 and 64 channels at 32, 16 and
# 8 pixels). The papers' ImageNet defaults assume 64 to 2048 channels: r = 16 would leave one
# hidden unit on 16 channels, so the bottlenecks use r = 4, as the chapters do.
ZOO = {
    "resnet": ZooEntry(None, why="the plain ResNet, no attention: every comparison is against it"),
    "se": ZooEntry("se", {"reduction": 4}, why="r = 4 (paper 16): at 16 channels r = 16 leaves one hidden unit"),
    "eca": ZooEntry("eca", {}, why="the paper's k = psi(C) with gamma = 2, b = 1: k = 3 on 16, 32 and 64 channels"),
    "ge": ZooEntry("ge", {"extent": 2}, why="GE-theta-minus, extent 2 (no parameters): the best extent of chapter 03"),
    "cbam": ZooEntry("cbam", {"reduction": 4, "kernel_size": 7}, why="r = 4 (paper 16), the paper's k = 7"),
    "psa": ZooEntry("psa", {"reduction": 4, "feature_size": 8}, stages=(3,),
                    why="last stage only (8 x 8): its maps are built for a fixed size and grow as (2H-1)(2W-1)"),
    "simam": ZooEntry("simam", {}, why="no parameters; lambda = 1e-4 as in the paper; after the last BatchNorm "
                      "(official ResNets: before it)"),
    "coord": ZooEntry("coord", {"reduction": 32},
                      why="the official r = 32 and min. 8 hidden: mip = max(8, C // 32) = 8 on 16, 32 and 64 channels"),
    "sk": ZooEntry("sk", {"position": "conv2", "groups": 2},
                   why="SK convs in conv2's place (bn2 kept); 2 groups (official 32 cannot divide 16 channels): "
                   "8, 16 and 32 channels per group, inside SKNet-50's 4 to 32, so that the branches hold as "
                   "many weights as the conv2 they replace (8 groups: a quarter, and 1.6x slower CPU steps); "
                   "the official r = 16, L = 32: d = 32 everywhere"),
    "nonlocal": ZooEntry("nonlocal", {"position": "after_block"}, stages=(2, 3),
                         why="one embedded-Gaussian block on the output of the blocks of stages 2 and 3 "
                         "(16 x 16 and 8 x 8), as the paper adds blocks after residual blocks of res3 and "
                         "res4; the official inner width C/2, phi and g computed from the 2 x 2 max-pooled input"),
    "gc": ZooEntry("gc", {"reduction": 4},
                   why="r = 4 (paper 16) as SE; att pooling and channel_add fusion, the official defaults; "
                   "in every stage in SE's slot (after the last BatchNorm, as mmdetection's after_conv3 "
                   "plugin), so that GC and SE differ only in the mechanism (the paper: c3-c5 of ResNet-50)"),
}

# Variants for the chapters' ablations; the same rules as the zoo.
VARIANTS = {
    "cbam-channel": ZooEntry("cbam", {"reduction": 4, "use_spatial": False}, why="CBAM's channel half alone"),
    "cbam-spatial": ZooEntry("cbam", {"kernel_size": 7, "use_channel": False}, why="CBAM's spatial half alone"),
    "cbam-reversed": ZooEntry("cbam", {"reduction": 4, "kernel_size": 7, "order": "spatial-channel"},
                              why="both halves, spatial first"),
    "ge-e4": ZooEntry("ge", {"extent": 4}, why="GE-theta-minus, extent 4"),
    "ge-global": ZooEntry("ge", {"extent": 0}, why="GE-theta-minus, global extent: SE without its MLP"),
    "simam-before-bn": ZooEntry("simam", {"position": "before_bn"},
                                why="SimAM in the official placement: after conv2, before its BatchNorm"),
    "sk-sum": ZooEntry("sk", {"position": "conv2", "groups": 2, "select": False},
                       why="SK's two branches simply added, no selection: what the softmax is measured against"),
    "sk-3x3": ZooEntry("sk", {"position": "conv2", "groups": 2, "dilations": [1], "select": False},
                       why="SK's 3x3 branch alone (grouped conv, BN, ReLU): the SK-ResNet without its 5x5 branch"),
}

# Chapter 05's task: per-pixel classes (attn_course.segmentation.SegmentationNet), one head at stride 4.
SEGMENTATION_HEADS = {
    "seg-none": ZooEntry(None, why="no head: the encoder's stride-4 features go straight to the decoder"),
    "seg-psa": ZooEntry("psa", {"reduction": 4, "feature_size": 8}, why="PSA on the 8 x 8 stride-4 features"),
    "seg-conv": ZooEntry("conv", why="a residual block of two 3x3 convolutions: the same place, local context only"),
}

# Chapter 11's detector (attn_course.detection.Detector): no attention, a channel one, and the two
# spatial ones whose gates the runner can score, each with the zoo's arguments and in every stage.
DETECTORS = {
    "det-none": ZooEntry(None, task="detect", why="the detector without attention"),
    "det-se": ZooEntry("se", {"reduction": 4}, task="detect", why="SE as in the zoo"),
    "det-cbam": ZooEntry("cbam", {"reduction": 4, "kernel_size": 7}, task="detect", why="CBAM as in the zoo"),
    "det-coord": ZooEntry("coord", {"reduction": 32}, task="detect", why="coordinate attention as in the zoo"),
}

# Chapter 12's U-Net (attn_course.unet.UNet) without and with Attention U-Net's gates on its skips.
UNETS = {
    "unet": ZooEntry(None, task="unet", why="the U-Net without gates"),
    "unet-gates": ZooEntry("attention_gate", task="unet",
                           why="additive attention gates on every skip connection (attn_course.attention_gates)"),
}

MODELS = {**ZOO, **VARIANTS, **SEGMENTATION_HEADS, **DETECTORS, **UNETS}


SHIFT_AND_DATA_MODELS = ("resnet", "se", "cbam", "coord")


@dataclass(frozen=True)
class Grid:
    """A named set of runs: every (setting, model, budget, seed) combination."""

    name: str
    description: str
    models: tuple
    settings: tuple
    budgets: tuple
    seeds: tuple

    def runs(self):
        """The grid's runs as (setting, model, budget, seed), cheap budgets and low seeds first.

        The order makes a partial grid useful: every model of a setting and budget gets seed 0
        before any gets seed 1, and the chapter budget is done before the long one starts.
        """
        return [(setting, model, budget, seed) for budget in self.budgets for seed in self.seeds
                for setting in self.settings for model in self.models]


GRIDS = {
    "zoo": Grid(
        "zoo", "every registered mechanism beside the plain ResNet, both settings, both budgets",
        models=tuple(ZOO), settings=("default", "headroom"), budgets=("chapter", "long"), seeds=tuple(range(5)),
    ),
    "segmentation": Grid(
        "segmentation", "chapter 05: no head, the PSA head and a convolutional head of the same depth",
        models=tuple(SEGMENTATION_HEADS), settings=("default",), budgets=("segmentation",), seeds=tuple(range(5)),
    ),
    "ablations": Grid(
        "ablations", "the chapters' ablations (CBAM's halves and order, Gather-Excite's extents, SimAM's "
        "placement, SK without selection) and their own baseline; the full CBAM, GE, SimAM and SK rows are "
        "the zoo's",
        models=("resnet", *VARIANTS), settings=("default", "headroom"), budgets=("chapter",),
        seeds=tuple(range(5)),
    ),
    # The challenges of issue 13, on the plain ResNet and one mechanism of each kind: SE (channel);
    # CBAM (spatial: the best-known spatial attention, with parameters that can overfit, unlike
    # GE-theta-minus, and a spatial gate the runner scores); coordinate attention (mixed: channel
    # gates that vary along rows and columns, size-agnostic, and scored as a spatial gate too).
    # No PSA: its maps are built for a fixed feature size, so it cannot take shift-canvas's images.
    "data-size": Grid(
        "data-size", "overfitting with little data: 250 to 8,000 training images (the training pool holds "
        "1,258 digit glyphs, so beyond that the same digits recur on other canvases), the same "
        f"{DATA_SIZE_STEPS} optimisation steps at every size; default setting",
        models=SHIFT_AND_DATA_MODELS, settings=("default",), budgets=tuple(f"data-{n}" for n in DATA_SIZES),
        seeds=tuple(range(5)),
    ),
    "detection": Grid(
        "detection", "chapter 11: the detector without attention, with SE, with CBAM and with coordinate "
        "attention; both settings",
        models=tuple(DETECTORS), settings=("default", "headroom"), budgets=("detection",), seeds=tuple(range(5)),
    ),
    "attention-gates": Grid(
        "attention-gates", "chapter 12: the U-Net without and with attention gates; both settings",
        models=tuple(UNETS), settings=("default", "headroom"), budgets=("unet",), seeds=tuple(range(5)),
    ),
    # Trained at the long budget (converged models: at the chapter budget the accuracies measure
    # how fast a model starts, and a shift would be confounded with under-training); 20 trainings.
    "shift": Grid(
        "shift", "generalisation: trained once per model and seed on default (long budget), then tested "
        "with the same weights on default and on more clutter, a larger canvas, larger fragments and "
        "pixel noise (settings shift-*)",
        models=SHIFT_AND_DATA_MODELS, settings=("default", "shift-clutter", "shift-canvas", "shift-fragment",
                                                "shift-noise"),
        budgets=("long",), seeds=tuple(range(5)),
    ),
}


class UnknownNameError(ValueError):
    """A setting, budget, model or grid name the study does not know; the message lists the valid ones."""


def _lookup(table, name, kind):
    if not isinstance(name, str) or name not in table:
        raise UnknownNameError(f"Unknown {kind} {name!r}. Valid names: {', '.join(table)}.")
    return table[name]


def get_setting(name):
    """The :class:`Setting` called ``name``; a ValueError lists the valid names."""
    return _lookup(SETTINGS, name, "setting")


def get_budget(name):
    """The :class:`Budget` called ``name``; a ValueError lists the valid names."""
    return _lookup(BUDGETS, name, "budget")


def get_model(name):
    """The :class:`ZooEntry` called ``name`` (zoo or variant); a ValueError lists the valid names."""
    return _lookup(MODELS, name, "model")


def get_grid(name):
    """The :class:`Grid` called ``name``; a ValueError lists the valid names."""
    return _lookup(GRIDS, name, "grid")


# Changes to a mechanism's code that change the numbers its runs compute, although its definition
# (arguments, data, budget) stays the same: each bump makes the rows computed before it stale.
# cbam 1: CBAM's hand-written backward and channels-last spatial conv (same forward values, its
# gradients summed in another order, so a training run ends elsewhere; rows recomputed 2026-11-26).
CODE_REVISIONS = {"cbam": 1}


def definition(setting, model, budget):
    """A short fingerprint of what a run computes: the setting's data, the model's entry and the budget.

    Every results row stores it. Change a definition here and the rows computed with the old one
    no longer match: :func:`attn_course.study.results.read_results` then refuses them by name, so
    a stale number can never be read as a current one. Descriptions and ``why`` texts do not count.
    A test-only setting (``train_on``, the shift grid) adds the data of the setting it trains on;
    a mechanism in :data:`CODE_REVISIONS` adds its revision.
    """
    entry, budget_, setting_ = get_model(model), get_budget(budget), get_setting(setting)
    # Fields added later count only when set, so that the rows made before they existed keep their hash.
    what = {"data": setting_.data,
            "model": {"attention": entry.attention, "kwargs": entry.kwargs, "stages": entry.stages,
                      **({"task": entry.task} if entry.task is not None else {})},
            "budget": {k: v for k, v in asdict(budget_).items()
                       if k not in ("name", "description") and not (k == "steps" and v is None)}}
    if entry.attention in CODE_REVISIONS:
        what["model"]["revision"] = CODE_REVISIONS[entry.attention]
    if setting_.train_on is not None:  # a test-only setting: the weights come from training on another
        what["train_data"] = get_setting(setting_.train_on).data
    text = json.dumps(what, sort_keys=True, default=list)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def missing_from_zoo():
    """Registered attention names that have no row in :data:`ZOO` (a new mechanism must add one)."""
    used = {entry.attention for entry in ZOO.values()}
    return sorted(set(ATTENTION) - used)
