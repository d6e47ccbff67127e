"""``python -m lds``: help, a tiny end-to-end run, checkpoint/resume, and user errors on ``--keep-edges``."""

import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lds.datasets import load_uci

import lds
from lds.__main__ import main

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--max-outer-iters", "2", "--max-inner-steps", "4", "--num-samples", "2", "--quiet", "--no-baseline"]
# wine (178 nodes, bundled with scikit-learn) is the cheapest dataset: a tiny fit takes well under a second
# (digits, 1797 nodes, takes ~10 s per outer iteration of 10 inner steps)
WINE = ["--dataset", "wine", *TINY]
# sparse candidates keep a Planetoid fit small if a broken range check lets one start
TINY_CORA = ["--dataset", "cora", "--candidates", "sparse", "--max-outer-iters", "1", "--max-inner-steps", "1",
             "--num-samples", "1", "--quiet", "--no-baseline"]
OPTIONS = ("--dataset", "--keep-edges", "--no-graph", "--seed", "--hypergrad-every", "--truncate", "--outer-lr",
           "--fixed-inner-lr", "--num-samples", "--patience", "--max-outer-iters", "--max-inner-steps",
           "--candidates", "--k", "--metric", "--dense", "--no-baseline", "--checkpoint", "--resume", "--device",
           "--quiet", "--data", "--features", "--edges", "--out", "--min-prob", "--threads", "--validation-fraction")


def run_main(argv, capsys):
    """``main(argv)`` in-process: (exit status, stdout, stderr + any SystemExit message)."""
    try:
        code = main(argv)
        message = ""
    except SystemExit as exc:
        code, message = exc.code, ""
        if isinstance(code, str):  # SystemExit("text") exits with status 1 and prints the text
            code, message = 1, exc.code
    out, err = capsys.readouterr()
    return (0 if code is None else code), out, err + message


def printed_test_accuracy(out: str) -> float:
    match = re.search(r"^test accuracy: ([0-9.]+)\s*$", out, re.MULTILINE)
    assert match, f"no test accuracy line in:\n{out}"
    return float(match.group(1))


def test_help_exits_zero_and_lists_the_options(capsys):
    """Catches a broken parser or an option dropped from ``--help``."""
    code, out, _ = run_main(["--help"], capsys)
    assert code == 0
    missing = [o for o in OPTIONS if o not in out]
    assert not missing, f"--help does not list {missing}"


def test_entry_point_runs_a_tiny_fit_and_prints_the_test_accuracy():
    """``python -m lds`` as a user runs it: catches a broken entry point, a non-zero exit on success or a
    missing/nonsensical test accuracy (wine has 3 classes: a working fit is far above chance)."""
    proc = subprocess.run([sys.executable, "-m", "lds", *WINE], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "dataset: wine  nodes: 178" in proc.stdout
    assert "kNN-LDS: 2 outer iterations" in proc.stdout
    assert 0.6 < printed_test_accuracy(proc.stdout) <= 1.0, proc.stdout


def test_checkpoint_then_resume_continues_the_history(tmp_path, capsys, monkeypatch):
    """Catches ``--checkpoint`` not writing a file or ``--resume`` starting afresh: the resumed fit keeps the
    checkpoint's records (same times, to the bit) and adds one iteration."""
    fitted = []
    real_fit = lds.LDS.fit

    def recording_fit(self, *args, **kwargs):
        fitted.append(self)
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(lds.LDS, "fit", recording_fit)
    ck = tmp_path / "ck.pt"
    code, out, err = run_main([*WINE, "--checkpoint", str(ck)], capsys)
    assert code == 0, err
    assert ck.is_file()
    first = fitted[-1].history_
    # the printed number is the fitted model's test accuracy (not e.g. the validation accuracy)
    data = load_uci("wine", seed=0)
    assert printed_test_accuracy(out) == pytest.approx(fitted[-1].score(data, data.test_mask), abs=5e-5)
    assert len(first) == 2
    code, out, err = run_main([*WINE, "--max-outer-iters", "3", "--resume", str(ck)], capsys)  # the last one wins
    assert code == 0, err
    assert "kNN-LDS: 3 outer iterations" in out
    resumed = fitted[-1].history_
    assert [h["iteration"] for h in resumed] == [0, 1, 2]
    assert resumed[:2] == first  # a fresh fit would measure new times
    assert resumed[2]["time"] >= first[1]["time"]
    assert printed_test_accuracy(out) == pytest.approx(fitted[-1].score(data, data.test_mask), abs=5e-5)


@pytest.mark.parametrize("keep", ["0", "-0.5", "1.5"])
def test_keep_edges_outside_the_unit_interval_is_an_error(keep, capsys):
    """Catches a missing range check on ``--keep-edges`` (it must be in (0, 1])."""
    code, _, err = run_main([*TINY_CORA, "--keep-edges", keep], capsys)
    assert code != 0
    assert "--keep-edges" in err


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # runpy: lds.__main__ already imported by this file
def test_module_entry_point_exits_with_mains_status(monkeypatch, capsys):
    """``if __name__ == "__main__": sys.exit(main())``: catches an entry point that drops main's exit status
    (a user error would exit 0 in a shell script)."""
    monkeypatch.setattr(sys, "argv", ["lds", *WINE, "--keep-edges", "0.5"])
    with pytest.raises(SystemExit) as exc:
        runpy.run_module("lds.__main__", run_name="__main__")
    assert exc.value.code not in (0, None)
    assert "--keep-edges" in capsys.readouterr().err + (exc.value.code if isinstance(exc.value.code, str) else "")


@pytest.mark.parametrize("dataset", ["digits", "wine"])
def test_keep_edges_on_data_without_a_graph_is_an_error(dataset, capsys):
    """Catches ``--keep-edges`` silently ignored on data that has no graph to delete edges from."""
    code, _, err = run_main(["--dataset", dataset, *TINY, "--keep-edges", "0.5"], capsys)
    assert code != 0
    assert "--keep-edges" in err


def test_cli_defaults_are_the_estimators_defaults():
    """The CLI takes its defaults from LDS itself: changing a default in one place cannot leave the other behind."""
    from lds import LDS
    from lds.__main__ import build_parser

    args = build_parser().parse_args([])
    defaults = LDS().get_params()
    for name in ("seed", "hypergrad_every", "truncate", "outer_lr", "num_samples", "patience", "max_outer_iters",
                 "max_inner_steps", "candidates", "k", "metric"):
        assert getattr(args, name) == defaults[name], name
    assert args.fixed_inner_lr is (not defaults["learn_inner_lr"]) and args.dense is (not defaults["sampling"])


def test_no_arguments_runs_breast_cancer_and_says_which_setting_ran(capsys):
    """The first result: no --dataset means scikit-learn's breast cancer (no download), on all pairs."""
    threads_before = torch.get_num_threads()
    code, out, err = run_main(TINY, capsys)
    assert code == 0, err
    assert "dataset: breast_cancer  nodes: 569" in out
    assert "setting: kNN-LDS, all 161,596 node pairs (the paper's setting)" in out
    assert "device cpu, 1 CPU thread(s)" in out  # a small graph: one thread (auto)
    assert torch.get_num_threads() == threads_before  # main() gives the caller its threads back
    assert 0.5 < printed_test_accuracy(out) <= 1.0


def _user_graph(folder: Path):
    """A 3-class graph in three formats: .npz with edges, .npz with edge_index and masks, a CSV pair."""
    import numpy as np

    rng = np.random.default_rng(0)
    n = 30
    y = np.repeat([0, 1, 2], 10)
    x = rng.normal(size=(n, 4)) + 2 * y[:, None]
    y_semi = np.where(rng.random(n) < 0.6, y, -1)
    y_semi[[0, 1, 10, 11, 20, 21]] = [0, 0, 1, 1, 2, 2]
    edges = np.array([[i, j] for i in range(n) for j in range(i + 1, n) if y[i] == y[j] and (i * j) % 4 == 1])
    np.savez(folder / "edges.npz", x=x, y=y_semi, edges=edges)
    labelled = np.flatnonzero(y_semi >= 0)
    masks = {name: np.isin(np.arange(n), labelled[i::3]) for i, name in enumerate(("train_mask", "val_mask",
                                                                                   "test_mask"))}
    np.savez(folder / "masks.npz", x=x, y=y_semi, edge_index=edges.T, **masks)
    ids = [f"node{i}" for i in range(n)]
    with open(folder / "nodes.csv", "w", encoding="utf-8") as fh:
        fh.write("id,a,b,c,d,label\n")
        for i in range(n):
            fh.write(",".join([ids[i], *map(str, x[i]), str(y_semi[i])]) + "\n")
    with open(folder / "edges.csv", "w", encoding="utf-8") as fh:
        fh.writelines(f"{ids[i]},{ids[j]}\n" for i, j in edges)
    return n, ids


@pytest.mark.parametrize("fmt", ["npz", "npz_masks", "csv"])
def test_user_graph_writes_predictions_edges_model_and_summary(fmt, tmp_path, capsys):
    """``--data``/``--features --edges`` with ``--out``: every output file is there, consistent with the model."""
    import csv
    import json

    import torch
    from lds.datasets import load_graph

    from lds import LDS
    from lds.export import learned_pairs

    n, ids = _user_graph(tmp_path)
    source = {"npz": ["--data", str(tmp_path / "edges.npz")],
              "npz_masks": ["--data", str(tmp_path / "masks.npz")],
              "csv": ["--features", str(tmp_path / "nodes.csv"), "--edges", str(tmp_path / "edges.csv")]}[fmt]
    out_dir = tmp_path / "out"
    code, out, err = run_main([*source, *TINY[:-1], "--out", str(out_dir), "--min-prob", "0.05"], capsys)
    assert code == 0, err
    assert "setting: LDS, all 435 node pairs" in out
    model = LDS.load(out_dir / "model.pt")
    data = load_graph(tmp_path / {"npz": "edges.npz", "npz_masks": "masks.npz", "csv": "nodes.csv"}[fmt],
                      edges=tmp_path / "edges.csv" if fmt == "csv" else None, seed=0)
    node_ids = ids if fmt == "csv" else [str(i) for i in range(n)]
    with open(out_dir / "predictions.csv", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["node_id", "predicted_class", "prob_0", "prob_1", "prob_2"] and len(rows) == n + 1
    assert [r[0] for r in rows[1:]] == node_ids
    proba = torch.tensor([[float(v) for v in r[2:]] for r in rows[1:]], dtype=torch.float64)
    torch.testing.assert_close(proba, model.predict_proba(data).double(), atol=1e-5, rtol=0)
    assert [int(r[1]) for r in rows[1:]] == proba.argmax(1).tolist()
    with open(out_dir / "learned_edges.csv", encoding="utf-8") as fh:
        edges = list(csv.reader(fh))
    pairs, probs, _ = learned_pairs(model, 0.05)
    assert edges[0] == ["i", "j", "theta"] and len(edges) - 1 == probs.numel() > 0
    assert all(float(t) > 0.05 and i in node_ids and j in node_ids for i, j, t in edges[1:])
    summary = json.loads((out_dir / "summary.json").read_text())
    expected = {"train", "val", "test"} if fmt == "npz_masks" else {"train", "val"}
    assert set(summary["accuracy"]) == expected and summary["nodes"] == n and summary["min_prob"] == 0.05
    assert summary["expected_edges"] == pytest.approx(model.distribution_.expected_num_edges())
    assert ("test accuracy:" in out) == (fmt == "npz_masks")


@pytest.mark.parametrize("argv, match", [
    (["--data", "graph.pt"], "graph.pt: pickled files are not accepted"),
    (["--data", "g.npz", "--dataset", "wine"], "--dataset names a benchmark"),
    (["--dataset", "wine", "--edges", "e.csv"], "--edges goes with --features"),
    (["--features", "nodes.npz"], "expected a .csv file"),
    (["--data", "missing.npz"], "missing.npz: no such file"),
    (["--dataset", "wine", "--min-prob", "2"], "--min-prob must be in"),
])
def test_user_data_errors_are_one_line(argv, match, capsys):
    code, _, err = run_main([*argv, *TINY], capsys)
    assert code == 2 and match in err and err.count("\n") == 1, err
