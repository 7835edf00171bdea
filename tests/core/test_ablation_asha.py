"""Asynchronous successive halving (--asha): a variant is promoted as soon as it ranks in the top
half of those that completed its rung, the baseline always; promotions are irrevocable, recorded
in halving.json, read back by the report and by a resume; the executor queues what ``more``
returns."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from llmbricks.core.ablation import asha
from llmbricks.core.ablation.asha import promote, rung_of
from llmbricks.core.ablation.execute import execute
from llmbricks.core.ablation.halving import (
    PAUSED,
    halving_view,
    read_promotions,
    write_decisions,
)
from llmbricks.core.ablation.jobs import Job
from llmbricks.core.ablation.results import RunEvents
from tests.core.test_ablation_halving import run

ALL = ["base", "a", "b", "c"]
ASYNC = {"mode": "async", "rungs": 2, "steps": {v: [4, 8] for v in ALL}}


def at_rung_0(losses: dict[str, float | None]) -> list[tuple[dict, RunEvents]]:
    """One seed per variant: paused at step 4 with its loss, or still training (None)."""
    return [run(v, 0, PAUSED, {4: losses[v]}) if losses.get(v) is not None
            else run(v, 0, "interrupted", {}) for v in ALL]


def test_a_variant_is_promoted_as_soon_as_it_ranks_in_the_top_half_of_those_completed():
    # a alone: floor(1/2) = 0 promoted.
    assert promote(ASYNC, "base", ALL, at_rung_0({"a": 1.5}), []) == []
    # a and b: the top 1 of 2, a, goes on without waiting for c and base.
    assert promote(ASYNC, "base", ALL, at_rung_0({"a": 1.5, "b": 2.0}), []) == [("a", 0)]
    # c completes and is now the best: the top 1 of 3 is c; a stays promoted.
    promoted = [("a", 0)]
    assert promote(ASYNC, "base", ALL, at_rung_0({"a": 1.5, "b": 2.0, "c": 0.5}),
                   promoted) == [("c", 0)]


def test_promotions_are_irrevocable_and_the_baseline_always_goes_on():
    # base completes last and best but one: the top 2 of 4 are c and base; a, promoted
    # earlier, now ranks third and keeps its promotion (3 of 4 go on).
    runs = at_rung_0({"a": 1.5, "b": 2.0, "c": 0.5, "base": 1.0})
    assert promote(ASYNC, "base", ALL, runs, [("a", 0), ("c", 0)]) == [("base", 0)]
    # The baseline goes on as soon as it completes a rung, however bad and however alone.
    assert promote(ASYNC, "base", ALL, at_rung_0({"base": 9.0}), []) == [("base", 0)]
    # Nothing is promoted twice.
    assert promote(ASYNC, "base", ALL, runs, [("a", 0), ("c", 0), ("base", 0)]) == []


def test_a_run_still_training_or_failing_holds_its_variant_back_until_retried():
    runs = [run("base", 0, "interrupted", {}), run("a", 0, PAUSED, {4: 1.5}),
            run("b", 0, "failed", {}), run("c", 0, PAUSED, {4: 2.0})]
    # b failed and was not retried yet: only a and c completed, the top 1 is a.
    assert promote(ASYNC, "base", ALL, runs, []) == [("a", 0)]
    # Retried and failed again: done with no loss, ranked last (top 1 of 3 is still a).
    assert promote(ASYNC, "base", ALL, runs, [("a", 0)],
                   tried=lambda v, k, r: (v, k, r) == ("b", 0, 0)) == []
    # a evaluated at its rung but its process is still writing the checkpoint: not done yet.
    assert promote(ASYNC, "base", ALL, runs, [], busy=lambda v, k, r: v == "a" and r == 0) == []
    assert promote(ASYNC, "base", ALL, runs, [], busy=lambda v, k, r: r == 1) == [("a", 0)]


def test_rungs_are_checked_from_the_top_down_and_count_only_who_was_promoted_there():
    variants = ["base", "a", "b", "c", "d"]
    halving = {"mode": "async", "rungs": 3, "steps": {v: [2, 4, 8] for v in variants}}
    runs = [run("base", 0, PAUSED, {2: 3.0}), run("a", 0, PAUSED, {2: 1.0, 4: 1.2}),
            run("b", 0, PAUSED, {2: 1.1, 4: 0.9}), run("c", 0, PAUSED, {2: 2.5}),
            run("d", 0, PAUSED, {2: 2.6, 4: 0.1})]  # d went past rung 0 unpromoted: not counted
    promoted = [("a", 0), ("b", 0)]
    assert promote(halving, "base", variants, runs, promoted) == [("b", 1), ("base", 0)]
    assert rung_of(promoted + [("b", 1)], "b") == 2 and rung_of(promoted, "c") == 0


def test_the_view_reads_the_promotions_from_halving_json(tmp_path):
    # a was promoted early, though it ends third of four at rung 0: the view keeps it at rung 1
    # (deciding again from the runs, as the synchronous view does, would prune it).
    runs = [run("base", k, "completed", {4: 1.0 + k / 10, 8: 0.8 + k / 10}) for k in range(2)] + \
           [run("a", k, "completed", {4: 1.5 + k / 10, 8: 0.9 + k / 5}) for k in range(2)] + \
           [run("b", k, PAUSED, {4: 2.0 + k / 10 + k * k / 100}) for k in range(2)] + \
           [run("c", k, "completed", {4: 0.5 + k / 10, 8: 0.4 + k / 10}) for k in range(2)]
    promoted = [("a", 0), ("c", 0), ("base", 0)]
    write_decisions(tmp_path, ASYNC, [], promoted)
    data = json.loads((tmp_path / "halving.json").read_text())
    assert data["mode"] == "async" and data["promoted"][0] == {"variant": "a", "from_rung": 0}
    assert read_promotions(tmp_path) == promoted
    rungs, summary, rows = halving_view(ASYNC, "base", ALL, runs, read_promotions(tmp_path))
    by = {s["variant"]: s for s in summary}
    assert [r.alive for r in rungs] == [ALL, ["base", "a", "c"]] and rungs[0].pruned == ["b"]
    assert by["a"]["rung"] == 1 and not by["a"]["pruned"]
    assert by["a"]["diff_paired"] == pytest.approx(0.15)           # vs base at step 8
    assert by["b"]["rung"] == 0 and by["b"]["pruned"]
    assert by["b"]["diff_paired"] == pytest.approx(1.0 + 1 / 200)  # vs base at step 4
    assert {r["status"] for r in rows if r["variant"] == "b"} == {"pruned"}
    assert {r["status"] for r in rows if r["variant"] != "b"} == {"completed"}
    # A variant not yet done at its rung is not pruned (it may still be promoted).
    waiting = [row for row in runs if row[0]["variant"] != "b"] + \
              [run("b", 0, PAUSED, {4: 2.0}), run("b", 1, "interrupted", {})]
    assert halving_view(ASYNC, "base", ALL, waiting, promoted)[0][0].pruned == []
    # halving.json lost: the promotions the runs show (trained past the rung).
    assert halving_view(ASYNC, "base", ALL, runs)[0][1].alive == ["base", "a", "c"]
    # A synchronous halving.json records no promotions.
    write_decisions(tmp_path, {"rungs": 2, "steps": ASYNC["steps"]}, [])
    assert read_promotions(tmp_path) is None and read_promotions(tmp_path / "none") is None


@dataclass
class FakePlan:
    halving: dict
    baseline: str = "base"
    seeds: list[int] = field(default_factory=lambda: [7])
    variants: list = field(default_factory=lambda: [type("V", (), {"name": v})() for v in ALL])

    def seed_sets(self, k: int) -> list[str]:
        return [f"seed={self.seeds[k]}"]


def fake_executor(monkeypatch, tmp_path: Path, state: dict[str, tuple], losses: dict[str, float],
                  seen: list):
    """Runs finish one at a time in queue order, reaching their --pause-at step (or 8)."""
    monkeypatch.setattr(asha, "read_runs", lambda directory: [
        run(v, 0, *state[v]) for v in ALL])

    def execute(jobs, *, on_done, more, **_):
        queue, records = list(jobs), []
        while queue:
            job = queue.pop(0)
            paused = "--pause-at" in job.argv
            step = int(job.argv[-1]) if paused else 8
            state[job.variant] = (PAUSED if paused else "completed",
                                  {**state[job.variant][1], step: losses[job.variant] - step / 100})
            record = {"variant": job.variant, "seed_index": 0, "status": "completed"}
            job.record.parent.mkdir(parents=True, exist_ok=True)
            on_done(job, record)
            records.append(record)
            new = more()
            recorded = read_promotions(tmp_path) or []
            seen.append((job.variant, step, [j.variant for j in new]))
            assert all(rung_of(recorded, j.variant) == 1 for j in new)  # recorded first
            queue += new
        return records

    monkeypatch.setattr(asha, "execute", execute)


def test_run_asha_promotes_as_runs_finish_and_records_each_promotion(monkeypatch, tmp_path):
    state = {v: ("missing", {}) for v in ALL}
    seen: list = []
    fake_executor(monkeypatch, tmp_path, state, {"base": 3.0, "a": 1.0, "b": 2.0, "c": 2.5}, seen)
    records = asha.run_asha(FakePlan(ASYNC), tmp_path, executor="local", workers=1, address=None)
    assert seen == [("base", 4, ["base"]),       # the baseline: promoted on completing
                    ("a", 4, ["a"]),             # top 1 of {base, a}
                    ("b", 4, []),                # top 1 of 3 is still a
                    ("c", 4, ["b"]),             # top 2 of 4: a (already) and b
                    ("base", 8, []), ("a", 8, []), ("b", 8, [])]
    assert len(records) == 7 and records[0]["status"] == PAUSED and records[0]["rung"] == 0
    assert read_promotions(tmp_path) == [("base", 0), ("a", 0), ("b", 0)]
    assert json.loads((tmp_path / "halving.json").read_text())["decided"][0]["pruned"] == ["c"]


def test_a_resume_keeps_the_recorded_promotions_and_requeues_what_is_unfinished(monkeypatch,
                                                                                tmp_path):
    # An earlier call promoted a (then the best of {a, base}) and base, and was killed with
    # a half-way through rung 1 and c not yet at rung 0.
    write_decisions(tmp_path, ASYNC, [], [("a", 0), ("base", 0)])
    state = {"base": ("completed", {4: 3.0, 8: 2.9}), "a": ("interrupted", {4: 2.6}),
             "b": (PAUSED, {4: 2.5}), "c": ("interrupted", {})}
    (tmp_path / "runs" / "a" / "seed-0").mkdir(parents=True)
    (tmp_path / "runs" / "a" / "seed-0" / "metrics.jsonl").write_text("{}\n")
    queued: list[Job] = []
    monkeypatch.setattr(asha, "read_runs", lambda directory: [run(v, 0, *state[v]) for v in ALL])
    monkeypatch.setattr(asha, "execute", lambda jobs, **_: queued.extend(jobs) or [])
    asha.run_asha(FakePlan(ASYNC), tmp_path, executor="local", workers=1, address=None)
    # b now ranks first of {a, b, base}: promoted too; a, now second, is not un-promoted.
    assert read_promotions(tmp_path) == [("a", 0), ("base", 0), ("b", 0)]
    argv = {job.variant: job.argv for job in queued}
    assert set(argv) == {"a", "b", "c"}                       # base is done
    assert "--resume" in argv["a"] and "--pause-at" not in argv["a"]  # on to the end
    assert argv["c"][-2:] == ["--pause-at", "4"]              # still at rung 0
    assert "--pause-at" not in argv["b"]


def test_execute_queues_the_jobs_that_more_returns(tmp_path):
    def job(name: str) -> Job:
        path = tmp_path / "runs" / name / "seed-0"
        return Job(name, 0, 7, path, path.with_suffix(".json"), [sys.executable, "-c", "pass"])

    extra = [[job("late")], [], []]
    calls: list[str] = []
    records = execute([job("a"), job("b")], workers=2, more=lambda: extra.pop(0),
                      on_done=lambda j, record: calls.append(j.variant))
    assert [r["variant"] for r in records] == ["a", "b", "late"]
    assert all(r["status"] == "completed" for r in records) and not extra
    assert sorted(calls) == ["a", "b", "late"]
    assert json.loads((tmp_path / "runs" / "late" / "seed-0.json").read_text())["status"] == \
        "completed"
