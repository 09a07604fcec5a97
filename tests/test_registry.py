"""The task registry: one registration per task, read by the loader, the models and the CLI."""

from __future__ import annotations

import pytest

from nos.cli import build_parser
from nos.cli.search import _config
from nos.errors import NosError
from nos.training.presets import STAGES, Budget, Preset
from nos.training.registry import (
    KINDS,
    PRESETS,
    TaskInfo,
    get_preset,
    get_task,
    register,
    suite,
    suite_names,
    task_names,
)


@pytest.mark.parametrize("name", task_names())
def test_every_task_has_a_budget_and_its_protocol_a_preset_for_every_stage(name):
    info = get_task(name)
    assert info.budget.steps > 0 and info.kind in KINDS and info.suites
    if info.kind != "classification" or ("search" not in info.suites and not info.presets):
        assert info.kind == "classification" or not info.presets  # it thresholds accuracy
        return  # a bench task needs no fitness preset
    assert set(info.presets) == set(STAGES)
    for preset in info.presets.values():
        assert preset.task == name
        assert get_preset(preset.name) is preset
        assert not preset.augment or info.augmentable


@pytest.mark.parametrize("name", task_names())
def test_every_task_names_a_loader_and_a_model(name):
    info = get_task(name)
    assert callable(info.loader()) and callable(info.model_class())


@pytest.mark.parametrize("name", [n for n in task_names() if get_task(n).presets])
def test_search_uses_the_tasks_own_presets(name):
    args = build_parser().parse_args(["search", "--fitness", "paper", "--task", name])
    config = _config(args)
    info = get_task(name)
    assert config.preset == info.presets["particle"].name
    assert config.cheap_preset == info.presets["init"].name


def test_flowers102_has_its_own_augmented_presets():
    info = get_task("flowers102")
    particle, init = info.presets["particle"], info.presets["init"]
    assert particle.task == init.task == "flowers102"
    assert particle.augment and not init.augment
    assert PRESETS["quick"].task == "digits"


def test_an_explicit_preset_wins_over_the_tasks():
    args = build_parser().parse_args(["search", "--task", "mnist1d", "--preset", "quick"])
    config = _config(args)
    assert config.preset == "quick" and config.cheap_preset == "quick"


def test_unknown_task_and_preset_name_the_known_ones():
    with pytest.raises(NosError, match=r"unknown task 'imagenet'.*digits"):
        get_task("imagenet")
    with pytest.raises(NosError, match=r"unknown preset 'fastest'.*quick"):
        get_preset("fastest")


def test_register_rejects_incomplete_or_inconsistent_tasks():
    stub = {
        "data": "nos.training.data.embedded:load_digits",
        "model": "nos.training.models:DigitsMLP",
        "budget": Budget(10),
    }
    only_init = {"init": Preset("x-init", "x")}
    with pytest.raises(ValueError, match="no preset for stage"):
        register(TaskInfo("x", "x", presets=only_init, **stub))
    wrong_task = {"init": Preset("y1", "digits"), "particle": Preset("y2", "digits")}
    with pytest.raises(ValueError, match="names task 'digits'"):
        register(TaskInfo("y", "y", presets=wrong_task, **stub))
    augments = {"init": Preset("z1", "z"), "particle": Preset("z2", "z", augment=True)}
    with pytest.raises(ValueError, match="augments a task without augmentation"):
        register(TaskInfo("z", "z", presets=augments, **stub))
    with pytest.raises(ValueError, match="registered twice"):
        register(get_task("digits"))
    with pytest.raises(ValueError, match="unknown kind"):
        register(TaskInfo("k", "k", kind="ranking", **stub))
    regression = {"init": Preset("r1", "r"), "particle": Preset("r2", "r")}
    with pytest.raises(ValueError, match="needs a classification task"):
        register(TaskInfo("r", "r", kind="regression", presets=regression, **stub))
    assert not {"x", "y", "z", "k", "r"} & set(task_names())


def test_suites_come_from_the_registry():
    assert "search" in suite_names()
    for name in suite_names():
        assert all(name in get_task(t).suites for t in suite(name))
    # the bench's unseen tasks are never part of the search's fitness
    others = [t for name in suite_names() if name != "search" for t in suite(name)]
    assert not set(suite("search")) & set(others)
    with pytest.raises(NosError, match="unknown suite 'huge'"):
        suite("huge")


def test_help_lists_the_registered_tasks(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["search", "--help"])
    out = capsys.readouterr().out
    for name in task_names():
        assert name in out
