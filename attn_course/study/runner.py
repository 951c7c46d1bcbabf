"""Run the study: one training run per (setting, model, budget, seed), and grids of them, resumably."""

import platform
import subprocess
import time
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..bench import count_flops, count_parameters
from ..data import make_cluttered_digits, make_loaders
from ..detection import Detector, detection_loss, detection_scores, make_detection_loaders
from ..explain import grad_cam
from ..metrics import energy_in_box, pointing_game, resize_maps
from ..models import AttentionRecorder, ResNet, eval_mode
from ..segmentation import SegmentationNet, conv_head, make_segmentation_loaders, segmentation_scores
from ..train import evaluate, fit, get_device, set_seed
from ..unet import UNet
from .results import KEY, append_result, append_results, read_results, results_path
from .settings import SEGMENTATION_HEADS, UnknownNameError, definition, get_budget, get_grid, get_model, get_setting


class FixedSteps:
    """A training loader of ``per_round`` batches per pass, drawn in turn from ``loader`` (cycled).

    Each pass of :func:`attn_course.train.fit` (an "epoch") over it is then a round of exactly
    ``per_round`` optimisation steps, whatever the size of the data set: the next round goes on
    where the last one stopped, and ``loader`` is reshuffled (by its own seeded generator) each
    time it is exhausted. A budget with ``steps`` trains through it (the data-size grid).
    """

    def __init__(self, loader, per_round):
        self.loader, self.per_round, self.dataset = loader, per_round, loader.dataset
        self._batches = None

    def __len__(self):
        return self.per_round

    def __iter__(self):
        for _ in range(self.per_round):
            batch = next(self._batches, None) if self._batches is not None else None
            if batch is None:  # the first batch, or the loader is exhausted: a new, reshuffled pass
                self._batches = iter(self.loader)
                batch = next(self._batches)
            yield batch


def _training_loader(train_loader, budget_):
    return train_loader if budget_.steps is None else FixedSteps(train_loader, budget_.steps_per_round)


def build_model(name):
    """The study's model ``name``, freshly initialised: the small ResNet of a zoo row or variant, the
    segmentation network of a head of :data:`~attn_course.study.settings.SEGMENTATION_HEADS`, the
    detector of :data:`~attn_course.study.settings.DETECTORS` or the U-Net of
    :data:`~attn_course.study.settings.UNETS`."""
    entry = get_model(name)
    if entry.task == "detect":
        return Detector(**entry.model_kwargs())
    if entry.task == "unet":
        return UNet(gates=entry.attention is not None, **entry.kwargs)
    if name in SEGMENTATION_HEADS:
        if entry.attention == "conv":
            return SegmentationNet(attention=conv_head)
        return SegmentationNet(**entry.model_kwargs(with_stages=False))
    return ResNet(**entry.model_kwargs())


def spatial_gate_maps(model, images, device):
    """The deepest spatial gate of ``model`` on ``images``, averaged over channels: (N, H, W), or None.

    A spatial gate is a sigmoid named ``gate`` whose output varies over positions: (N, c, h, w)
    with h * w > 1 (CBAM's spatial half, Gather-Excite with a local extent, SimAM). One attention
    module can apply several that multiply (coordinate attention: a row gate (N, C, h, 1) times a
    column gate (N, C, 1, w)); their product is the module's gate, so each module's 4-D gates are
    multiplied before the deepest module's is taken. Channel gates (N, C) play no part, and
    softmax maps over positions (PSA) are attention between positions, not gates.
    """
    gates = [name for name, module in model.named_modules()
             if name.rsplit(".", 1)[-1] == "gate" and isinstance(module, torch.nn.Sigmoid)]
    if not gates:
        return None
    with eval_mode(model), torch.no_grad(), AttentionRecorder(model) as recorder:
        for batch in images.split(512):
            model(batch.to(device))
    per_module = {}  # the attention module (its name up to ".attention") -> the product of its 4-D gates
    for name, maps in recorder.stacked().items():  # in module order
        if name in gates and maps.dim() == 4:
            owner = name.split(".attention")[0]
            per_module[owner] = maps if owner not in per_module else per_module[owner] * maps
    spatial = [maps for maps in per_module.values() if maps.shape[-2] * maps.shape[-1] > 1]
    if not spatial:
        return None
    return resize_maps(spatial[-1].float().mean(1), tuple(images.shape[-2:]))  # the deepest: modules in order


@lru_cache(maxsize=1)
def _code_version():
    """The git commit of the package's code, and whether it differed from that commit ("dirty").

    Read once per process, when this module is imported (see the call below the function): that
    is the code the process runs, whatever happens to the files afterwards.
    Only ``attn_course/`` and ``pyproject.toml`` count, since only they change what a run computes.
    """
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "attn_course",
                                     "pyproject.toml"], cwd=root, capture_output=True, text=True,
                                    check=True).stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        commit, dirty = "unknown", True  # not a git checkout (an installed package): say so
    return commit, dirty


_code_version()  # now, at import: later edits of the files do not change what this process runs


def provenance():
    """Where a row was computed: torch version, CPU, threads, and the git commit of the code."""
    commit, dirty = _code_version()
    return {"torch": torch.__version__, "cpu": _cpu_name(), "threads": torch.get_num_threads(),
            "commit": commit, "dirty": dirty}


def _cpu_name():
    """The CPU's model name (Linux's /proc/cpuinfo), else what :mod:`platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip().replace(",", " ")
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_one(setting, model, budget, seed, grid="", device=None, progress=False):
    """Train the study's ``model`` on ``setting`` for ``budget`` with ``seed``; return its results row.

    The data, the shuffling and the initial weights all follow from ``seed``, so a run is
    reproducible: on one machine, bit for bit.
    """
    setting_, budget_ = get_setting(setting), get_budget(budget)
    entry = get_model(model)  # validate the name before any work
    if setting_.train_on is not None:  # a test-only setting (the shift grid): train on its training setting
        return run_shift([setting], model, budget, seed, grid=grid, device=device, progress=progress)[0]
    device = torch.device(device) if device is not None else get_device()
    if entry.task == "detect":
        return _run_detection(grid, setting, model, budget, seed, device, progress)
    segmentation = model in SEGMENTATION_HEADS or entry.task == "unet"
    loaders = make_segmentation_loaders if segmentation else make_loaders
    train_loader, test_loader = loaders(seed=seed, **budget_.loader_kwargs(), **setting_.data)
    set_seed(seed)
    net = build_model(model)
    history = fit(net, _training_loader(train_loader, budget_), test_loader, epochs=budget_.epochs, lr=budget_.lr,
                  device=device, progress=progress, desc=f"{model} {setting} {budget} seed {seed}")
    return _row(grid, setting, model, budget, seed, net, history.test_accuracy, history, test_loader, device)


def _run_detection(grid, setting, model, budget, seed, device, progress):
    """:func:`run_one` for a detector: its own loaders and loss; every epoch scored by
    :func:`~attn_course.detection.detection_scores` (the test curve holds the class accuracy)."""
    setting_, budget_ = get_setting(setting), get_budget(budget)
    train_loader, test_loader = make_detection_loaders(seed=seed, **budget_.loader_kwargs(), **setting_.data)
    set_seed(seed)
    net = build_model(model)
    scores = []
    history = fit(net, _training_loader(train_loader, budget_), None, epochs=budget_.epochs, lr=budget_.lr,
                  device=device, loss_fn=detection_loss, progress=progress,
                  desc=f"{model} {setting} {budget} seed {seed}",
                  on_epoch_end=lambda epoch, model_: scores.append(detection_scores(model_, test_loader, device)))
    return _row(grid, setting, model, budget, seed, net, [s["accuracy"] for s in scores], history, test_loader, device,
                detection=scores[-1])


def run_shift(settings, model, budget, seed, grid="", device=None, progress=False):
    """Train ``model`` once on the training setting of ``settings``, test it on each; one row per setting.

    ``settings`` are test settings (``Setting.train_on``, e.g. the shift grid's) that share one
    training setting, which may be among them (train_on None: trained and tested there). The
    weights are trained once and never retrained: every setting's test set is scored after each
    epoch from the same weights, so its row has its own test curve. A model that cannot take a
    setting's images (PSA's fixed feature size on a larger canvas) is refused before training.
    The training, and so a training setting's own row, is the one :func:`run_one` computes.
    """
    tests = [get_setting(name) for name in settings]
    budget_ = get_budget(budget)
    get_model(model)
    trained_on = {test.training_setting for test in tests}
    if len(trained_on) != 1:
        raise ValueError(f"run_shift: the settings {', '.join(settings)} train on different settings "
                         f"({', '.join(sorted(trained_on))}); give settings that share one.")
    if model in SEGMENTATION_HEADS or get_model(model).task is not None:
        raise ValueError(f"run_shift: {model!r} is not a classifier; the shift grid tests classifiers.")
    train_setting = get_setting(trained_on.pop())
    device = torch.device(device) if device is not None else get_device()
    train_loader, _ = make_loaders(seed=seed, **budget_.loader_kwargs(), **train_setting.data)  # as run_one
    test_loaders = {test.name: DataLoader(make_cluttered_digits(budget_.n_test, "test", seed=seed, **test.data),
                                          batch_size=512, shuffle=False) for test in tests}
    probe = build_model(model).eval()  # before set_seed: the trained model's draws stay run_one's
    for name, loader in test_loaders.items():
        images = loader.dataset.images[:2]
        try:
            with torch.no_grad():
                probe(images)
        except Exception as error:  # noqa: BLE001 (any failure: this model cannot be tested here)
            raise ValueError(f"model {model!r} cannot take the {tuple(images.shape[-2:])} images of setting "
                             f"{name!r} ({type(error).__name__}: {error}). Leave it out of this grid: e.g. PSA's "
                             f"maps are built for a fixed feature size.") from error
    set_seed(seed)
    net = build_model(model)
    curves = {name: [] for name in test_loaders}

    def score(epoch, model_):
        for name, loader in test_loaders.items():
            curves[name].append(evaluate(model_, loader, device))

    history = fit(net, _training_loader(train_loader, budget_), None, epochs=budget_.epochs, lr=budget_.lr,
                  device=device, progress=progress, desc=f"{model} {train_setting.name} {budget} seed {seed}",
                  on_epoch_end=score)
    return [_row(grid, name, model, budget, seed, net, curves[name], history, loader, device)
            for name, loader in test_loaders.items()]


def _row(grid, setting, model, budget, seed, net, curve, history, test_loader, device, detection=None):
    """The results row of a trained ``net`` scored on ``test_loader`` (its test curve: ``curve``);
    ``detection``: a detector's final :func:`~attn_course.detection.detection_scores`."""
    task = get_model(model).task
    segmentation = model in SEGMENTATION_HEADS or task == "unet"
    images = test_loader.dataset.tensors[0] if segmentation else test_loader.dataset.images
    row = {"grid": grid, "setting": setting, "mechanism": model, "budget": budget, "seed": seed,
           "definition": definition(setting, model, budget),
           "test_accuracy": curve[-1] if curve else float("nan"), "test_miou": float("nan"),
           "test_dice": float("nan"), "test_ap50": float("nan"), "test_ap": float("nan"),
           "final_train_loss": history.train_loss[-1],
           "test_accuracy_curve": curve, "train_loss_curve": history.train_loss,
           "train_seconds": history.seconds, "params": count_parameters(net),
           "mflops": count_flops(net, (1, *images.shape[1:])) / 1e6, "device": device.type,
           "gate_pointing_game": float("nan"), "gate_energy_in_box": float("nan"),
           "gradcam_pointing_game": float("nan"), "gradcam_energy_in_box": float("nan")}
    if segmentation:
        scores = segmentation_scores(net, test_loader, device=device, dice=task == "unet")
        row["test_miou"] = scores["mIoU"]
        row["test_dice"] = scores.get("dice", float("nan"))
    elif detection is not None:
        row.update(test_miou=detection["mean_iou"], test_ap50=detection["ap50"], test_ap=detection["ap"])
    if not segmentation:  # the deepest spatial gate against the boxes: a classifier's, or a detector's backbone's
        test = test_loader.dataset
        gates = spatial_gate_maps(net, test.images, device)
        if gates is not None:
            row["gate_pointing_game"] = pointing_game(gates, test.boxes)
            row["gate_energy_in_box"] = energy_in_box(gates, test.boxes)
    if not segmentation and detection is None:  # Grad-CAM of the last stage: classifiers only
        cam = torch.cat([grad_cam(net, net.stages[-1], batch) for batch in test.images.split(512)])
        row["gradcam_pointing_game"] = pointing_game(cam, test.boxes)
        row["gradcam_energy_in_box"] = energy_in_box(cam, test.boxes)
    row.update(provenance())
    row["finished_utc"] = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return row


def _done(grid, path, check_definitions=True):
    """The runs ``path`` holds, as (setting, model, budget, seed) keys; none if it does not exist yet."""
    if not Path(path).exists():
        return set()
    return {tuple(row[k] for k in KEY) for row in read_results(Path(path), grid, check_definitions)}


def pending_runs(grid, path, settings=None, models=None, budgets=None):
    """The runs of ``grid`` that ``path`` does not hold yet, in the grid's order.

    ``settings``, ``models`` and ``budgets`` (lists of names, None for all) select a slice of the
    grid, e.g. ``budgets=["long"]``: two processes can then share a grid without running a run twice.
    """
    grid_ = get_grid(grid)
    for names, kind, valid in ((settings, "setting", grid_.settings), (models, "model", grid_.models),
                               (budgets, "budget", grid_.budgets)):
        unknown = [n for n in names or () if n not in valid]
        if unknown:
            raise UnknownNameError(f"grid {grid!r} has no {kind} {', '.join(map(repr, unknown))}. "
                                   f"Valid names: {', '.join(valid)}.")
    done = _done(grid, path)
    return [(setting, model, budget, seed) for setting, model, budget, seed in grid_.runs()
            if (setting, model, budget, seed) not in done and (settings is None or setting in settings)
            and (models is None or model in models) and (budgets is None or budget in budgets)]


def _training_key(setting, model, budget, seed):
    """The training a run's row comes from: runs on test-only settings of one training share it."""
    return get_setting(setting).training_setting, model, budget, seed


def run_grid(grid, directory="results", device=None, limit=None, progress=True, settings=None, models=None,
             budgets=None):
    """Run every run of ``grid`` missing from ``<directory>/<grid>.csv``, appending each as it ends.

    An interrupted grid resumes where it stopped: finished rows are never rewritten or lost.
    ``limit`` stops after that many runs; ``settings``, ``models`` and ``budgets`` select a slice
    (see :func:`pending_runs`). Returns the number of runs made and appended. Processes that share
    a file should run disjoint slices; where they overlap, a run that another process has stored
    is skipped (checked before and after each run), so no run is ever stored twice.

    A grid with test-only settings (``shift``) trains once per (model, budget, seed) and appends
    the rows of all its test settings together (:func:`run_shift`); ``limit`` then counts trainings,
    a training whose rows are all stored is skipped, and one whose rows are partly stored (another
    process, or a write cut short) is detected and completed with the missing rows only. It cannot
    be sliced by setting: every training yields every test setting.
    """
    grid_ = get_grid(grid)
    if any(get_setting(name).train_on is not None for name in grid_.settings):
        return _run_grouped_grid(grid, directory, device, limit, progress, settings, models, budgets)
    path = results_path(grid, directory)
    todo = pending_runs(grid, path, settings, models, budgets)[:limit]
    bar = tqdm(todo, desc=f"grid {grid}", disable=not progress, unit="run")
    made = 0
    for setting, model, budget, seed in bar:
        name = f"{model:14s} {setting:9s} {budget:8s} seed {seed}"
        # Another process working on the same file (an overlapping slice) may have made this run
        # since the list was drawn up: check again before and after, never append a run twice.
        # Rows of models this process does not know (added to the code after it started) are fine here.
        if (setting, model, budget, seed) in _done(grid, path, check_definitions=False):
            bar.write(f"{name}: already in {path} (another process made it), skipped")
            continue
        bar.set_postfix_str(f"{model} {setting} {budget} seed {seed}")
        start = time.perf_counter()
        row = run_one(setting, model, budget, seed, grid=grid, device=device)
        if (setting, model, budget, seed) in _done(grid, path, check_definitions=False):
            bar.write(f"{name}: another process stored this run meanwhile; not appended again")
            continue
        append_result(path, row)
        made += 1
        bar.write(f"{name}: {time.perf_counter() - start:6.1f} s")
    return made


def _run_grouped_grid(grid, directory, device, limit, progress, settings, models, budgets):
    """:func:`run_grid` for a grid of test-only settings: one training per group of rows."""
    if settings:
        raise UnknownNameError(f"grid {grid!r} trains each model once and tests it on all its settings "
                               f"({', '.join(get_grid(grid).settings)}), so it cannot be sliced by setting; "
                               f"select models or budgets instead.")
    path = results_path(grid, directory)
    groups = {}  # training -> its pending test settings, in the grid's order
    for setting, model, budget, seed in pending_runs(grid, path, None, models, budgets):
        groups.setdefault(_training_key(setting, model, budget, seed), []).append(setting)
    planned = {}  # training -> all its test settings in the grid
    for setting, model, budget, seed in get_grid(grid).runs():
        planned.setdefault(_training_key(setting, model, budget, seed), []).append(setting)
    todo = list(groups)[:limit]
    bar = tqdm(todo, desc=f"grid {grid}", disable=not progress, unit="training")
    made = 0
    for key in bar:
        trained_on, model, budget, seed = key
        name = f"{model:14s} trained on {trained_on} {budget:8s} seed {seed}"
        done = _done(grid, path, check_definitions=False)
        missing = [s for s in planned[key] if (s, model, budget, seed) not in done]
        if not missing:
            bar.write(f"{name}: all {len(planned[key])} rows already in {path}, skipped")
            continue
        if len(missing) < len(planned[key]):
            bar.write(f"{name}: {len(planned[key]) - len(missing)} of its {len(planned[key])} rows are stored, "
                      f"not {', '.join(missing)}: an incomplete set, completed now")
        bar.set_postfix_str(f"{model} {trained_on} {budget} seed {seed}")
        start = time.perf_counter()
        rows = run_shift(planned[key], model, budget, seed, grid=grid, device=device)
        done = _done(grid, path, check_definitions=False)
        rows = [row for row in rows if row["setting"] in missing and (row["setting"], model, budget, seed) not in done]
        if not rows:
            bar.write(f"{name}: another process stored these rows meanwhile; not appended again")
            continue
        append_results(path, rows)
        made += len(rows)
        bar.write(f"{name}: {len(rows)} rows, {time.perf_counter() - start:6.1f} s")
    return made


def distinct_training_glyphs(budget, seed, setting="default"):
    """How many distinct handwritten digits (glyphs of the training pool) a run's training set holds.

    The training pool holds about 1,258 glyphs (70% of scikit-learn's 1,797 digits); a set of n
    images draws its digits from it with replacement, so beyond about a thousand images more images
    mostly re-place the same glyphs on other canvases. Cheap (the data only, no training); the
    results files do not store it, since every run of a (budget, seed) shares it.
    """
    budget_, setting_ = get_budget(budget), get_setting(setting)
    data = get_setting(setting_.training_setting).data
    images = make_cluttered_digits(budget_.n_train, "train", seed=seed, **data)
    return int(images.glyphs.unique().numel())
