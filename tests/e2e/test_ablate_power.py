"""`llmbricks ablate --dry-run --detect`: seeds needed from a finished ablation or a quick pilot."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.e2e.test_ablate import FAST, ablate
from tests.e2e.train_fixtures import tiny_config

REPO = Path(__file__).resolve().parents[2]


def test_detect_on_the_committed_positional_ablation_prints_seeds_for_0_01_and_0_05(tmp_path):
    config = tiny_config(tmp_path, **FAST)
    pilot = REPO / "docs" / "ablations" / "positional"
    result = ablate(str(config), "--grid", "model.positional=absolute,sinusoidal,rope,alibi,t5,none",
                    "--seeds", "3", "--dry-run", "--detect", "0.01", "--detect", "0.05",
                    "--pilot", str(pilot), tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "seeds for 80% power at alpha 0.01 (0.05 / 5 comparisons)" in out
    assert "positional=rope - positional=absolute" in out
    needed = {float(m[1]): int(m[2]) for m in
              re.finditer(r"to detect ([\d.]+) in every comparison: (\d+) seeds \(planned: 3\)", out)}
    assert set(needed) == {0.01, 0.05} and 2 <= needed[0.05] < needed[0.01]


def test_detect_refuses_without_dry_run_or_without_a_pilot(tmp_path):
    config = tiny_config(tmp_path, **FAST)
    no_dry = ablate(str(config), "--detect", "0.01", tmp_path=tmp_path)
    assert no_dry.returncode == 2 and "add --dry-run" in no_dry.stderr
    no_pilot = ablate(str(config), "--grid", "model.norm=layernorm,rmsnorm", "--dry-run",
                      "--detect", "0.01", "--out", "abl", tmp_path=tmp_path)
    assert no_pilot.returncode == 2 and "give --pilot DIR" in no_pilot.stderr
    nothing = ablate(str(config), "--dry-run", "--detect", "0.01", "--pilot", "nowhere",
                     tmp_path=tmp_path)
    assert nothing.returncode == 2
    assert "--pilot nowhere: not an ablation directory" in nothing.stderr


@pytest.mark.slow
def test_a_quick_pilot_trains_short_runs_then_reads_their_spread(tmp_path):
    config = tiny_config(tmp_path, **FAST)
    result = ablate(str(config), "--grid", "model.norm=layernorm,rmsnorm", "--seeds", "2",
                    "--dry-run", "--detect", "0.05", "--pilot", "3", "--out", "abl", "--jobs", "2",
                    tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "pilot: 2 variants x 2 seeds of 3 steps into abl-pilot" in result.stdout
    assert "norm=rmsnorm - norm=layernorm" in result.stdout
    assert "to detect 0.05 in every comparison:" in result.stdout
    pilot_runs = sorted(p.name for p in (tmp_path / "abl-pilot" / "runs").glob("*/seed-*.json"))
    assert pilot_runs == ["seed-0.json", "seed-0.json", "seed-1.json", "seed-1.json"]
    assert not (tmp_path / "abl").exists()   # the ablation itself trained nothing; its --out is free
