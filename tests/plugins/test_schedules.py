"""Schedules as components: each curve's landmarks, cosine unchanged, the plot verb, and a grid
over optimizers and schedules planned by the ablation dry run."""

from __future__ import annotations

import math

import pytest

from llmbricks.core.config import load_config
from llmbricks.core.registry import get_registry
from llmbricks.core.train.optim import learning_rate, schedule_curve
from tests.conftest import EXAMPLES
from tests.e2e.bad_inputs import assert_clean_failure, invoke

KW = {"lr": 1e-3, "total_steps": 101, "warmup_steps": 11, "min_lr": 1e-4}
QUICKSTART = str(EXAMPLES / "configs" / "quickstart.yaml")


def rate(name: str, step: int, **params: object) -> float:
    schedule = get_registry().build("schedule", {"name": name, **params})
    return schedule.rate(step, **KW)


@pytest.mark.parametrize("name", ["constant", "cosine", "linear", "wsd", "inverse_sqrt"])
def test_warmup_is_shared_and_ends_at_the_peak(name):
    assert rate(name, 0) == pytest.approx(1e-3 / 11)
    assert rate(name, 10) == 1e-3  # the last warmup step uses the peak


def test_cosine_is_the_loops_schedule_of_before_bit_for_bit():
    for schedule in ("cosine", "constant"):
        for step in range(101):
            assert rate(schedule, step) == learning_rate(step, schedule=schedule, **KW)


@pytest.mark.parametrize("name,mid,end", [
    ("constant", 1e-3, 1e-3),
    ("cosine", 1e-4 + 0.9e-3 * 0.5, 1e-4),        # p = 1/2 at step 11 + 89/2
    ("linear", 1e-4 + 0.9e-3 * 0.5, 1e-4),
    ("inverse_sqrt", 1e-3 * math.sqrt(11 / 56), 1e-3 * math.sqrt(11 / 101)),
])
def test_each_curve_at_its_landmarks(name, mid, end):
    middle = 11 + 89 / 2  # halfway between the first step after warmup and the last
    schedule = get_registry().build("schedule", name)
    at = (schedule.rate(math.floor(middle), **KW) + schedule.rate(math.ceil(middle), **KW)) / 2
    if name == "inverse_sqrt":  # not symmetric around the midpoint: read step 55 itself
        at = schedule.rate(55, **KW)
    assert at == pytest.approx(mid, rel=1e-3)
    assert schedule.rate(100, **KW) == pytest.approx(end)


P = 5 / 19  # step 86 of the decay from step 81 to the last, 100


@pytest.mark.parametrize("shape,left", [("linear", 1 - P), ("cosine", 0.5 * (1 + math.cos(math.pi * P))),
                                        ("sqrt", 1 - math.sqrt(P))])
def test_wsd_holds_the_peak_then_decays_in_the_last_fraction(shape, left):
    params = {"decay_fraction": 0.2, "decay_shape": shape}  # 20 of 101 steps: from step 81
    assert [rate("wsd", s, **params) for s in (11, 50, 80)] == [1e-3] * 3
    assert rate("wsd", 81, **params) == pytest.approx(1e-3)
    assert rate("wsd", 100, **params) == pytest.approx(1e-4)
    assert rate("wsd", 86, **params) == pytest.approx(1e-4 + 0.9e-3 * left)


def test_inverse_sqrt_never_goes_below_min_lr():
    schedule = get_registry().build("schedule", "inverse_sqrt")
    assert schedule.rate(10**7, **KW) == 1e-4


def test_a_schedule_written_as_a_name_still_loads():
    config = load_config({"train": {"schedule": "constant"}})
    assert config.train.schedule.name == "constant"
    assert schedule_curve(config.train, steps=5) == [pytest.approx(config.train.lr / 100 * (s + 1))
                                                     for s in range(5)]


def test_schedule_plot_writes_the_curve(tmp_path):
    out = tmp_path / "lr.png"
    done = invoke("schedule", "plot", QUICKSTART, "--set", "train.schedule=wsd", "--out", str(out))
    assert done.code == 0, done.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert done.stdout.splitlines()[0].startswith("wsd (decay_fraction 0.2, decay_shape linear)")
    assert "step 1999: 0.0001" in done.stdout


def test_schedule_plot_of_an_epoch_budget_needs_steps(tmp_path):
    done = invoke("schedule", "plot", QUICKSTART, "--set", "train.max_steps=null", "--set", "train.epochs=2",
                  "--out", str(tmp_path / "lr.png"))
    assert_clean_failure(done, 2, "train.max_steps is unset", "--steps N")
    assert not (tmp_path / "lr.png").exists()


def test_a_grid_over_optimizers_and_schedules_plans_four_variants(tmp_path):
    env = {"LLMBRICKS_CACHE_DIR": str(tmp_path / "cache")}
    hermetic = ["--set", "data.source=python_docs"]  # embedded text: no data folder needed
    done = invoke("ablate", "run", QUICKSTART, *hermetic, "--grid", "train.optimizer=adamw,muon",
                  "--grid", "train.schedule=cosine,wsd", "--dry-run", "--out", str(tmp_path / "a"),
                  env=env)
    assert done.code == 0, done.stderr
    for variant in ("optimizer=adamw,schedule=cosine", "optimizer=muon,schedule=wsd"):
        assert variant in done.stdout.replace(" ", ""), done.stdout
    typo = invoke("ablate", "run", QUICKSTART, *hermetic, "--grid", "train.optimizer=adamw,muonn",
                  "--dry-run", "--out", str(tmp_path / "b"), env=env)
    assert_clean_failure(typo, 2, "muonn", "did you mean 'muon'")
