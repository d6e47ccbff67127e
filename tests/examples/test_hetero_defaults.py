"""examples/hetero_defaults.py end to end on a tiny budget: one record per run, the summary's rows."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "examples"))

import hetero_defaults as hd  # noqa: E402

TINY = {"max_outer_iters": 1, "max_inner_steps": 10, "num_samples": 2}


def test_runs_are_recorded_and_summarised(tmp_path, monkeypatch):
    monkeypatch.setattr(hd, "SETTINGS", {"default": dict(TINY), "given": {"init_graph": "given", **TINY}})
    monkeypatch.setattr(hd, "SEEDS", (0,))
    out = tmp_path / "hd"
    assert hd.main(["--out", str(out)]) == 0
    lines = (out / "runs.jsonl").read_text().splitlines()
    assert len(lines) == 2
    text = (out / "summary.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| given |"))
    assert "| 1 |" in row and "| given (1) |" in row  # one seed; θ₀ the given graph (on 1 seed), as pinned
    assert hd.main(["--out", str(out)]) == 0  # resumed: nothing rerun
    assert len((out / "runs.jsonl").read_text().splitlines()) == 2
