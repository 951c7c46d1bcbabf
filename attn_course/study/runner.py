"""Run the study: one training run per (setting, model, budget, seed), and grids of them, resumably."""

import platform
import subprocess
import time
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..bench import count_flops, count_parameters
from ..data import make_loaders
from ..explain import grad_cam
from ..metrics import energy_in_box, pointing_game, resize_maps
from ..models import AttentionRecorder, ResNet, eval_mode
from ..segmentation import SegmentationNet, conv_head, make_segmentation_loaders, segmentation_scores
from ..train import fit, get_device, set_seed
from .results import KEY, append_result, read_results, results_path
from .settings import SEGMENTATION_HEADS, UnknownNameError, definition, get_budget, get_grid, get_model, get_setting


def build_model(name):
    """The study's model ``name``, freshly initialised: the small ResNet of a zoo row or variant, or
    the segmentation network of a head of :data:`~attn_course.study.settings.SEGMENTATION_HEADS`."""
    entry = get_model(name)
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
    get_model(model)  # validate the name before any work
    segmentation = model in SEGMENTATION_HEADS
    device = torch.device(device) if device is not None else get_device()
    loaders = make_segmentation_loaders if segmentation else make_loaders
    train_loader, test_loader = loaders(seed=seed, **budget_.loader_kwargs(), **setting_.data)
    set_seed(seed)
    net = build_model(model)
    history = fit(net, train_loader, test_loader, epochs=budget_.epochs, lr=budget_.lr, device=device,
                  progress=progress, desc=f"{model} {setting} {budget} seed {seed}")
    images = test_loader.dataset.tensors[0] if segmentation else test_loader.dataset.images
    row = {"grid": grid, "setting": setting, "mechanism": model, "budget": budget, "seed": seed,
           "definition": definition(setting, model, budget),
           "test_accuracy": history.final_test_accuracy, "test_miou": float("nan"),
           "final_train_loss": history.train_loss[-1],
           "test_accuracy_curve": history.test_accuracy, "train_loss_curve": history.train_loss,
           "train_seconds": history.seconds, "params": count_parameters(net),
           "mflops": count_flops(net, (1, *images.shape[1:])) / 1e6, "device": device.type,
           "gate_pointing_game": float("nan"), "gate_energy_in_box": float("nan"),
           "gradcam_pointing_game": float("nan"), "gradcam_energy_in_box": float("nan")}
    if segmentation:
        row["test_miou"] = segmentation_scores(net, test_loader, device=device)["mIoU"]
    else:
        test = test_loader.dataset
        gates = spatial_gate_maps(net, test.images, device)
        if gates is not None:
            row["gate_pointing_game"] = pointing_game(gates, test.boxes)
            row["gate_energy_in_box"] = energy_in_box(gates, test.boxes)
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


def run_grid(grid, directory="results", device=None, limit=None, progress=True, settings=None, models=None,
             budgets=None):
    """Run every run of ``grid`` missing from ``<directory>/<grid>.csv``, appending each as it ends.

    An interrupted grid resumes where it stopped: finished rows are never rewritten or lost.
    ``limit`` stops after that many runs; ``settings``, ``models`` and ``budgets`` select a slice
    (see :func:`pending_runs`). Returns the number of runs made and appended. Processes that share
    a file should run disjoint slices; where they overlap, a run that another process has stored
    is skipped (checked before and after each run), so no run is ever stored twice.
    """
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
