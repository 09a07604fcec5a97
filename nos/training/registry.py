"""The task registry: every proxy task, with its data, model, presets and augmentation.

Adding a task means writing its loader (a function returning a
:class:`~nos.training.data.Dataset`) and one :func:`register` call below. Everything else
reads this registry: the task loader (:func:`nos.training.tasks.load_task`), the model
builder, the presets ``--preset`` accepts, and the CLI's task choices and help text.

The registry is plain data and imports no torch: the loader and the model are named by
``"module:attribute"`` paths and imported only when a task is loaded, so ``nos --help``
stays fast.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nos.errors import NosError
from nos.training.presets import STAGES, Budget, Preset

__all__ = [
    "KINDS",
    "PRESETS",
    "Kind",
    "TaskInfo",
    "get_preset",
    "get_task",
    "register",
    "suite",
    "suite_names",
    "task_names",
]


@dataclass(frozen=True)
class Kind:
    """What a kind of task optimises and reports: its loss and its validation metric."""

    loss: str  # "cross_entropy" or "mse"
    metric: str  # "accuracy", "mse" or "loss"
    higher_is_better: bool


#: The kinds of task. A language model's metric is its loss in nats per token.
KINDS: dict[str, Kind] = {
    "classification": Kind("cross_entropy", "accuracy", True),
    "regression": Kind("mse", "mse", False),
    "language-model": Kind("cross_entropy", "loss", False),
}


@dataclass(frozen=True)
class TaskInfo:
    """One registered task.

    Attributes:
      name: the task's name (``--task``).
      summary: one line for help texts.
      data: ``"module:function"`` of the loader; file-based loaders take the data
        directory as first argument (``needs_data_dir``), the others only options.
      model: ``"module:class"`` of the network, called as ``model(generator=...,
        **model_options, **preset options)``.
      budget: plain training to a loss (:class:`Budget`), for the bench and the suite
        fitness.
      kind: a key of :data:`KINDS` (classification, regression, language-model).
      presets: a :class:`Preset` of the paper's protocol for every fitness stage of
        :data:`STAGES`; only classification tasks have them (the protocol's thresholds
        are training accuracies).
      suites: the named suites (``--suite``) the task belongs to.
      augmentable: whether the paper's image pipeline (normalisation, pad-crop, flip,
        cutout) applies; a preset with ``augment=True`` needs it.
      so_friendly: whether plane search (:mod:`nos.optim.plane_search`) applies: a linear
        model or a 2-layer network with more inputs than outputs, trained full batch.
    """

    name: str
    summary: str
    data: str
    model: str
    budget: Budget
    kind: str = "classification"
    presets: Mapping[str, Preset] = field(default_factory=dict)
    suites: tuple[str, ...] = ()
    needs_data_dir: bool = False
    augmentable: bool = False
    model_options: Mapping[str, Any] = field(default_factory=dict)
    so_friendly: bool = False

    @property
    def spec(self) -> Kind:
        return KINDS[self.kind]

    def loader(self) -> Callable[..., Any]:
        return _resolve(self.data)

    def model_class(self) -> Callable[..., Any]:
        return _resolve(self.model)


_TASKS: dict[str, TaskInfo] = {}
#: Every registered preset, by name (filled by :func:`register`).
PRESETS: dict[str, Preset] = {}


def _resolve(path: str) -> Callable[..., Any]:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def register(info: TaskInfo) -> TaskInfo:
    """Add a task; its presets become available by name. Returns ``info``."""
    if info.name in _TASKS:
        raise ValueError(f"task {info.name!r} is registered twice")
    if info.kind not in KINDS:
        raise ValueError(f"task {info.name!r} has unknown kind {info.kind!r}")
    missing = [s for s in STAGES if s not in info.presets]
    if info.presets and missing:
        raise ValueError(f"task {info.name!r} has no preset for stage(s) {missing}")
    if info.presets and info.kind != "classification":
        raise ValueError(f"task {info.name!r}: the paper's protocol needs a classification task")
    for preset in info.presets.values():
        if preset.task != info.name:
            raise ValueError(
                f"preset {preset.name!r} of task {info.name!r} names task {preset.task!r}"
            )
        if preset.augment and not info.augmentable:
            raise ValueError(f"preset {preset.name!r} augments a task without augmentation")
        known = PRESETS.get(preset.name)
        if known is not None and known != preset:
            raise ValueError(f"preset name {preset.name!r} is registered twice")
    _TASKS[info.name] = info
    for preset in info.presets.values():
        PRESETS[preset.name] = preset
    return info


def task_names() -> tuple[str, ...]:
    return tuple(_TASKS)


def suite_names() -> tuple[str, ...]:
    """The named suites, in the order their first task was registered."""
    return tuple(dict.fromkeys(s for info in _TASKS.values() for s in info.suites))


def suite(name: str) -> tuple[str, ...]:
    """The tasks of the suite ``name``, in registration order."""
    tasks = tuple(n for n, info in _TASKS.items() if name in info.suites)
    if not tasks:
        raise NosError(f"unknown suite {name!r}; choose one of {', '.join(suite_names())}")
    return tasks


def get_task(name: str) -> TaskInfo:
    try:
        return _TASKS[name]
    except KeyError:
        raise NosError(f"unknown task {name!r}; choose one of {', '.join(_TASKS)}") from None


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise NosError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None


# ------------------------------------------------------------------------ the built-ins

_DATA = "nos.training.data"
_MODELS = "nos.training.models"

# Spec §5.4 (particle phase): ConvNet b = 48 with augmentation, 7 x 800 + 16,000 steps.
_PAPER = Preset(
    "paper",
    "cifar10",
    width=48,
    augment=True,
    final_steps=400,
    total_steps=16000,
    divergence_factor=None,
    target=0.7,
)
# Spec §5.3 (initial population): ConvNet b = 32, plain images, 7 x 800 + 8,000 steps.
_PAPER_INIT = Preset("paper-init", "cifar10", width=32, divergence_factor=None, target=0.6)

register(
    TaskInfo(
        "cifar10",
        "CIFAR-10 from disk, the paper's ConvNet (spec §5)",
        data=f"{_DATA}.cifar10:load_cifar10",
        model=f"{_MODELS}:ConvNet",
        budget=Budget(5000, batch_size=128, warmup=250, eval_every=500, target=0.7),
        presets={"init": _PAPER_INIT, "particle": _PAPER},
        suites=("cifar",),
        needs_data_dir=True,
        augmentable=True,
        model_options={"width": 48},
    )
)

# Flowers102's training split holds 1,020 images (8 batches of 128), so the paper's
# shape runs on a quarter of its step budget: 7 x 200 + 40 x 100 steps.
register(
    TaskInfo(
        "flowers102",
        "Flowers102 from disk at 32x32, the paper's ConvNet with 102 classes",
        data=f"{_DATA}.flowers102:load_flowers102",
        model=f"{_MODELS}:ConvNet",
        budget=Budget(2000, batch_size=128, warmup=100, eval_every=200, target=0.3),
        suites=("cifar",),
        presets={
            "init": Preset(
                "flowers102-init",
                "flowers102",
                width=32,
                sweep_steps=50,
                final_steps=50,
                warmup=200,
                total_steps=2000,
                divergence_factor=None,
                target=0.2,
            ),
            "particle": Preset(
                "flowers102",
                "flowers102",
                width=48,
                augment=True,
                sweep_steps=50,
                final_steps=100,
                warmup=200,
                total_steps=4000,
                divergence_factor=None,
                target=0.3,
            ),
        },
        needs_data_dir=True,
        augmentable=True,
        model_options={"num_classes": 102, "width": 48},
    )
)

# Digits MLP, 7 x 40 + 400 = 680 steps: about 43 passes over 1,200 images, like the
# paper's 45 over CIFAR-10.
_QUICK = Preset(
    "quick", "digits", sweep_steps=10, final_steps=10, warmup=40, total_steps=400, target=0.9
)
register(
    TaskInfo(
        "digits",
        "8x8 handwritten digits (scikit-learn, embedded), an MLP",
        data=f"{_DATA}.embedded:load_digits",
        model=f"{_MODELS}:DigitsMLP",
        budget=Budget(400, batch_size=128, warmup=20, eval_every=50, target=0.95),
        presets={"init": _QUICK, "particle": _QUICK},
        suites=("search",),
    )
)

# MNIST-1D CNN, 7 x 60 + 600 = 1,020 steps: about 21 passes over 3,600 signals.
_MNIST1D = Preset(
    "mnist1d", "mnist1d", sweep_steps=15, final_steps=15, warmup=60, total_steps=600, target=0.6
)
register(
    TaskInfo(
        "mnist1d",
        "MNIST-1D signals (generated), a 1-D CNN",
        data=f"{_DATA}.embedded:load_mnist1d",
        model=f"{_MODELS}:Mnist1dCNN",
        budget=Budget(600, batch_size=128, warmup=30, eval_every=100, target=0.6),
        presets={"init": _MNIST1D, "particle": _MNIST1D},
        # not in the search suite: its BatchNorm's slow running statistics make the
        # validation loss erratic at the short budgets a fitness can afford
        suites=("holdout",),
    )
)


# ----------------------------------------------------- the suite fitness's generated tasks
# The tasks of the search suite besides digits, and the validation-only tasks
# (suite "holdout") that measure how a fitness ranks optimizers on tasks it never trains
# on. Data are generated (nos.training.data.generated); networks in
# nos.training.suite_models. Each trains its budget in a few seconds on one CPU thread.

_GEN = f"{_DATA}.generated"
_SUITE_MODELS = "nos.training.suite_models"


def _quick_presets(task: str) -> dict[str, Preset]:
    """The paper's protocol at the digits preset's small scale, for the classifiers here."""
    preset = Preset(
        f"{task}-quick", task, sweep_steps=10, final_steps=10, warmup=40, total_steps=400
    )
    return {"init": preset, "particle": preset}


register(
    TaskInfo(
        "mnist1d-conv",
        "MNIST-1D signals (generated), a 1-D CNN without normalisation layers",
        data=f"{_DATA}.embedded:load_mnist1d",
        model=f"{_SUITE_MODELS}:SignalCNN",
        budget=Budget(150, batch_size=64, warmup=8, eval_every=75, target=0.6),
        presets=_quick_presets("mnist1d-conv"),
        suites=("search",),
    )
)
register(
    TaskInfo(
        "recall",
        "token sequences, a sum of two earlier tokens at every position (generated), an LSTM",
        data=f"{_GEN}:load_recall",
        model=f"{_SUITE_MODELS}:RecallLSTM",
        kind="language-model",
        budget=Budget(150, batch_size=64, warmup=8, eval_every=75),
        suites=("search",),
    )
)
register(
    TaskInfo(
        "teacher",
        "regression on a random tanh teacher network's outputs (generated), a student MLP",
        data=f"{_GEN}:load_teacher",
        model=f"{_SUITE_MODELS}:StudentMLP",
        kind="regression",
        budget=Budget(150, batch_size=64, warmup=8, eval_every=75),
        suites=("search",),
    )
)
register(
    TaskInfo(
        "spirals",
        "three noisy 2-D spirals (generated), a deep narrow tanh MLP",
        data=f"{_GEN}:load_spirals",
        model=f"{_SUITE_MODELS}:DeepTanhMLP",
        budget=Budget(150, batch_size=64, warmup=8, eval_every=75, target=0.9),
        presets=_quick_presets("spirals"),
        suites=("search",),
    )
)
register(
    TaskInfo(
        "gratings",
        "noisy sinusoidal gratings by orientation and frequency (generated), a small CNN",
        data=f"{_GEN}:load_gratings",
        model=f"{_SUITE_MODELS}:GratingsCNN",
        budget=Budget(200, batch_size=64, warmup=10, eval_every=100, target=0.8),
        presets=_quick_presets("gratings"),
        suites=("holdout",),
    )
)
register(
    TaskInfo(
        "forecast",
        "next values of noisy sums of sines (generated), a GRU",
        data=f"{_GEN}:load_forecast",
        model=f"{_SUITE_MODELS}:ForecastGRU",
        kind="regression",
        budget=Budget(200, batch_size=64, warmup=10, eval_every=100),
        suites=("holdout",),
    )
)
register(
    TaskInfo(
        "checkerboard",
        "a 4x4 checkerboard of 2-D points with label noise (generated), a ReLU MLP",
        data=f"{_GEN}:load_checkerboard",
        model=f"{_SUITE_MODELS}:ReluMLP",
        budget=Budget(200, batch_size=64, warmup=10, eval_every=100, target=0.9),
        presets=_quick_presets("checkerboard"),
        suites=("holdout",),
    )
)
register(
    TaskInfo(
        "quadratic",
        "an ill-conditioned noisy linear regression (generated), a linear model",
        data=f"{_GEN}:load_quadratic",
        model=f"{_SUITE_MODELS}:LinearModel",
        kind="regression",
        budget=Budget(200, batch_size=64, warmup=10, eval_every=100),
        suites=("holdout",),
    )
)


# ------------------------------------------------------------- the bench's tasks (nos bench)
# Generated data only (nos.training.data.synthetic), disjoint from the search suite. The
# budgets give about a second per run on one thread; the SO-friendly ones train full batch.

_SYNTH = f"{_DATA}.synthetic"
_BENCH = "nos.training.bench_models"

register(
    TaskInfo(
        "logreg",
        "softmax (logistic) regression on ill-conditioned make_classification data",
        data=f"{_SYNTH}:load_logreg",
        model=f"{_BENCH}:LinearModel",
        budget=Budget(300, batch_size=0, warmup=15, eval_every=25, target=0.65),
        suites=("small",),
        model_options={"in_features": 40, "num_classes": 4},
        so_friendly=True,
    )
)
register(
    TaskInfo(
        "wide-mlp",
        "2-layer tanh network on wide make_classification data (100 inputs, 10 classes)",
        data=f"{_SYNTH}:load_wide",
        model=f"{_BENCH}:TwoLayerMLP",
        budget=Budget(250, batch_size=0, warmup=15, eval_every=25, target=0.6),
        suites=("small",),
        model_options={"in_features": 100, "hidden": 16, "num_classes": 10, "activation": "tanh"},
        so_friendly=True,
    )
)
register(
    TaskInfo(
        "lstsq",
        "least squares on make_regression data of low effective rank",
        data=f"{_SYNTH}:load_lstsq",
        model=f"{_BENCH}:LinearModel",
        budget=Budget(300, batch_size=0, warmup=15, eval_every=25, target=0.1),
        kind="regression",
        suites=("small",),
        model_options={"in_features": 100, "num_classes": 1},
        so_friendly=True,
    )
)
register(
    TaskInfo(
        "friedman-mlp",
        "3-layer swish MLP regression on Friedman #1 data, minibatches of 64",
        data=f"{_SYNTH}:load_friedman",
        model=f"{_BENCH}:MLP",
        budget=Budget(400, batch_size=64, warmup=20, eval_every=25, target=0.1),
        kind="regression",
        suites=("small",),
        model_options={"in_features": 10, "num_classes": 1, "hidden": 64, "depth": 2},
    )
)
register(
    TaskInfo(
        "shapes-cnn",
        "small CNN on generated 16x16 images of six shapes",
        data=f"{_SYNTH}:load_shapes",
        model=f"{_BENCH}:SmallCNN",
        budget=Budget(250, batch_size=32, warmup=15, eval_every=25, target=0.6),
        suites=("small",),
        model_options={"num_classes": 6, "size": 16, "width": 8},
    )
)
register(
    TaskInfo(
        "markov-lm",
        "character LSTM on generated text (a word-level Markov chain over a made-up lexicon)",
        data=f"{_SYNTH}:load_markov_text",
        model=f"{_BENCH}:CharLSTM",
        budget=Budget(200, batch_size=16, warmup=10, eval_every=25, target=1.3),
        kind="language-model",
        suites=("small",),
        model_options={"vocab": 28, "embed": 16, "hidden": 48},
    )
)

# The bench's second network on CIFAR-10: a small ResNet (ResNet-14, widths 16/32/64).
register(
    TaskInfo(
        "cifar10-resnet",
        "CIFAR-10 from disk, a ResNet-14 (widths 16/32/64)",
        data=f"{_DATA}.cifar10:load_cifar10",
        model=f"{_BENCH}:ResNet",
        budget=Budget(5000, batch_size=128, warmup=250, eval_every=500, target=0.7),
        suites=("cifar",),
        needs_data_dir=True,
        augmentable=True,
        model_options={"num_classes": 10, "width": 16, "blocks": 2},
    )
)
