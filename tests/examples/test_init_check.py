"""examples/init_check.py on the synthetic heterophilous graph: the check finds that its given graph hurts."""

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "examples"))

import init_check as ic  # noqa: E402


def test_synthetic_graph_is_found_to_hurt(tmp_path, monkeypatch):
    monkeypatch.setattr(ic, "tasks_of", lambda d: [{"exp": "init_check", "dataset": d, "keep": 1.0, "seed": 0}])
    out = tmp_path / "ic"
    assert ic.main(["--datasets", "synthetic_hetero", "--out", str(out)]) == 0
    (rec,) = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    assert rec["init_graph"] in ("knn", "none")  # 85 % of its edges join two classes
    assert rec["difference"] < -2 * rec["stderr"] and rec["none"] < rec["given"]
    assert rec["init_graph"] == ("none" if rec["none"] < rec["knn"] else "knn")  # the lower loss replaces it
    assert rec["outer_nodes"] == 60  # half of the 120 validation nodes
    assert "| synthetic_hetero | 100 % | 1 | 0 |" in (out / "summary.md").read_text()
