"""``python -m lds``: help, a tiny end-to-end run, checkpoint/resume, and user errors on ``--keep-edges``."""

import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
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
           "--quiet")


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
