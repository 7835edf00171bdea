"""`ablate --dry-run --match flops`: FLOPs per token, the matched steps, the budget."""

from __future__ import annotations

from llmbricks.core.ablation.plan import make_plan
from llmbricks.core.flops import format_flops
from tests.e2e.test_ablate import FAST, ablate
from tests.e2e.train_fixtures import tiny_config


def row(out: str, variant: str) -> list[str]:
    """The cells of the table row that starts with ``variant``."""
    line = next(line for line in out.splitlines() if line.startswith(f"│ {variant} "))
    return [cell.strip() for cell in line.strip("│").split("│")]


def test_dry_run_match_flops_shows_flops_per_token_and_the_steps_each_variant_gets(
        tmp_path, monkeypatch):
    config = tiny_config(tmp_path, **FAST)  # 6 steps of 4 x 1 x 16 = 64 tokens
    result = ablate(str(config), "--grid", "model.emb_dim=32,64", "--baseline", "64",
                    "--match", "flops", "--out", "abl", "--dry-run", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    monkeypatch.setenv("LLMBRICKS_CACHE_DIR", str(tmp_path / "cache"))  # the child's tokenizer
    plan = make_plan(config, grid=["model.emb_dim=32,64"], baseline="64", match="flops")
    flops = plan.match["flops_per_token"]
    small, big = flops["emb_dim=32"], flops["emb_dim=64"]
    assert small < big
    steps = round(6 * big / small)  # equal FLOPs: the narrower model trains more steps
    assert plan.match["steps"] == {"emb_dim=32": steps, "emb_dim=64": 6}
    header = next(line for line in out.splitlines() if line.startswith("┃ variant"))
    assert "FLOPs/token" in header and "steps" in header
    cells = row(out, "emb_dim=32")
    assert format_flops(small) in cells and str(steps) in cells
    cells = row(out, "emb_dim=64 *")
    assert format_flops(big) in cells and "6" in cells
    budget = 6 * 64 * big
    assert (f"--match flops: {format_flops(budget)} FLOPs each (baseline: 6 steps x 64 tokens x "
            f"{format_flops(big)} FLOPs/token)") in out
    assert not (tmp_path / "abl").exists()
