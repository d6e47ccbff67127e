"""Safety and bad input (issue 31): loading runs no code, checkpoints are tied to their data and written
atomically, and bad settings or data are clear errors (also one ``error:`` line from the CLI)."""

import copy
import math
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import lds.model as lds_model
from lds import LDS, GCNBaseline
from lds.__main__ import main

from .synthetic import planted_partition

ROOT = Path(__file__).resolve().parents[2]
QUICK = dict(max_outer_iters=2, max_inner_steps=6, hypergrad_every=3, num_samples=2, patience=50, verbose=False)


@pytest.fixture(scope="module")
def data():
    return planted_partition(per_class=6, num_features=4, num_train=2, num_val=2, seed=0)  # 18 nodes, 6 test


@pytest.fixture(scope="module")
def saved(tmp_path_factory, data):
    """A fitted model, its model file and its checkpoint (2 iterations, final checkpoint)."""
    folder = tmp_path_factory.mktemp("saved")
    model = LDS(**QUICK).fit(data, checkpoint=folder / "ck.pt")
    model.save(folder / "model.pt")
    return model, folder / "model.pt", folder / "ck.pt"


def _raises_naming(path, exc=ValueError):
    return pytest.raises(exc, match=re.escape(str(path)))


# ----------------------------------------------------------------------------- loading runs no code


class Payload:
    """Unpickling this creates the marker file (what a malicious file would do with os.system)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
@pytest.mark.parametrize("target", ["load", "resume"])
def test_a_pickled_payload_is_refused_and_never_runs(target, writer, tmp_path, data, saved):
    _, model_path, ck_path = saved
    marker = tmp_path / "payload-ran"
    path = tmp_path / "evil.pt"
    state = torch.load(model_path if target == "load" else ck_path, weights_only=True)
    state["history"] = [Payload(marker)]
    if writer == "torch.save":
        torch.save(state, path)
    else:
        path.write_bytes(pickle.dumps(state))
    with _raises_naming(path):
        if target == "load":
            LDS.load(path)
        else:
            LDS(**QUICK).fit(data, resume=path)
    assert not marker.exists(), "loading the file ran the pickled payload"


def _bad_files(folder, model_path):
    good = model_path.read_bytes()
    files = {"empty": b"", "truncated": good[: len(good) // 2], "random": os.urandom(2048),
             "text": b"not a torch file\n"}
    out = {}
    for name, content in files.items():
        out[name] = folder / f"{name}.pt"
        out[name].write_bytes(content)
    for name, obj in {"foreign_dict": {"a": 1}, "tensor": torch.zeros(3),
                      "kind_without_keys": {"kind": "lds-model"}, "list": [1, 2]}.items():
        out[name] = folder / f"{name}.pt"
        torch.save(obj, out[name])
    return out


BAD = ["empty", "truncated", "random", "text", "foreign_dict", "tensor", "kind_without_keys", "list"]


@pytest.mark.parametrize("kind", BAD)
def test_load_of_a_file_that_is_not_a_model_names_the_path(kind, tmp_path, saved):
    _, model_path, ck_path = saved
    path = _bad_files(tmp_path, model_path)[kind]
    with _raises_naming(path):
        LDS.load(path)


@pytest.mark.parametrize("kind", BAD)
def test_resume_from_a_file_that_is_not_a_checkpoint_names_the_path(kind, tmp_path, data, saved):
    _, model_path, _ = saved
    path = _bad_files(tmp_path, model_path)[kind]
    with _raises_naming(path):
        LDS(**QUICK).fit(data, resume=path)


def test_model_and_checkpoint_files_are_not_interchangeable_and_missing_files_say_so(tmp_path, data, saved):
    _, model_path, ck_path = saved
    with _raises_naming(ck_path, ValueError):
        LDS.load(ck_path)
    with _raises_naming(model_path, ValueError):
        LDS(**QUICK).fit(data, resume=model_path)
    missing = tmp_path / "nope.pt"
    with _raises_naming(missing, FileNotFoundError):
        LDS.load(missing)
    with _raises_naming(missing, FileNotFoundError):
        LDS(**QUICK).fit(data, resume=missing)


def test_saved_files_hold_only_tensors_and_plain_values(saved, data):
    model, model_path, ck_path = saved
    for path in (model_path, ck_path):
        torch.load(path, weights_only=True)  # would raise on anything else
    assert torch.equal(LDS.load(model_path).predict_proba(data), model.predict_proba(data))


def test_a_callable_backbone_cannot_be_saved(tmp_path, saved):
    model = copy.copy(saved[0])
    model.backbone = lambda c_in, c_out: None
    with pytest.raises(ValueError, match="callable backbone"):
        model.save(tmp_path / "m.pt")
    assert not (tmp_path / "m.pt").exists()


def test_a_checkpoint_of_a_callable_backbone_is_plain_and_resumable(tmp_path, data):
    from torch_geometric.nn import GCNConv

    def factory(c_in, c_out):
        return GCNConv(c_in, c_out)

    settings = dict(QUICK, backbone=factory, candidates="sparse", k=3, max_outer_iters=1, max_inner_steps=5)
    ck = tmp_path / "ck.pt"
    LDS(**settings).fit(data, checkpoint=ck)
    assert torch.load(ck, weights_only=True)["params"]["backbone"].startswith("<callable ")
    assert len(LDS(**{**settings, "max_outer_iters": 2}).fit(data, resume=ck).history_) == 2


# ----------------------------------------------------------------------------- resume checks the data


def _other_data(data, how):
    other = data.clone()
    if how == "half_the_edges":
        pairs = other.edge_index[:, other.edge_index[0] < other.edge_index[1]]
        kept = pairs[:, : pairs.size(1) // 2]
        other.edge_index = torch.cat([kept, kept.flip(0)], dim=1)
    elif how == "shuffled_features":
        other.x = other.x[torch.randperm(other.num_nodes, generator=torch.Generator().manual_seed(0))]
    elif how == "relabelled_y":
        other.y = (other.y + 1) % 3
    elif how == "other_split":
        other.train_mask, other.test_mask = data.train_mask.roll(1), data.test_mask.roll(1)
        other.train_mask &= ~other.val_mask
        other.test_mask = ~(other.train_mask | other.val_mask)
    return other


@pytest.mark.parametrize("how", ["half_the_edges", "shuffled_features", "relabelled_y", "other_split"])
def test_resume_on_other_data_of_the_same_size_is_an_error(how, data, saved):
    _, _, ck = saved
    other = _other_data(data, how)
    assert other.num_nodes == data.num_nodes
    with pytest.raises(ValueError, match="written for different data"):
        LDS(**QUICK).fit(other, resume=ck)


def test_resume_on_the_same_data_continues(data, saved):
    _, _, ck = saved
    resumed = LDS(**{**QUICK, "max_outer_iters": 3}).fit(data.clone(), resume=ck)
    assert [h["iteration"] for h in resumed.history_] == [0, 1, 2]


# ----------------------------------------------------------------------------- final checkpoint, writable path


def test_a_final_checkpoint_is_written_when_max_outer_iters_ends_the_fit(tmp_path, data):
    ck = tmp_path / "ck.pt"
    LDS(**QUICK, checkpoint_every=10).fit(data, checkpoint=ck)
    assert torch.load(ck, weights_only=True)["iteration"] == 2


def test_keyboard_interrupt_writes_the_last_finished_iteration_and_resume_matches_a_full_fit(tmp_path, data):
    def interrupt_second(it, record, dist):
        if it == 1:
            raise KeyboardInterrupt

    ck = tmp_path / "ck.pt"
    with pytest.warns(UserWarning, match="interrupted"):
        model = LDS(**QUICK, checkpoint_every=10).fit(data, checkpoint=ck, callback=interrupt_second)
    assert model.interrupted_
    assert torch.load(ck, weights_only=True)["iteration"] == 1  # iteration 1 did not finish
    resumed = LDS(**QUICK).fit(data, resume=ck)
    full = LDS(**QUICK).fit(data)
    assert torch.equal(resumed.distribution_.probs, full.distribution_.probs)


def _unwritable_paths(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    paths = {"proc": "/proc/nope/ck.pt", "under_a_file": str(blocker / "ck.pt"), "a_directory": str(tmp_path)}
    if os.name == "posix" and os.geteuid() != 0:  # root writes into read-only folders
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        paths["read_only_dir"] = str(ro / "ck.pt")
    return paths


@pytest.mark.parametrize("where", ["proc", "under_a_file", "a_directory", "read_only_dir"])
def test_an_unwritable_checkpoint_path_fails_before_any_fitting(where, tmp_path, data):
    paths = _unwritable_paths(tmp_path)
    if where not in paths:
        pytest.skip("running as root: a read-only folder is writable")
    calls = []
    with pytest.raises(ValueError, match="not writable|is a directory"):
        LDS(**QUICK).fit(data, checkpoint=paths[where], callback=lambda *a: calls.append(a))
    assert calls == []


# ----------------------------------------------------------------------------- atomic write


def _torn_save(obj, f, *args, **kwargs):
    """Write part of a file, then fail like a full disk."""
    if hasattr(f, "write"):
        f.write(b"PK\x03\x04 half a zip")
    else:
        with open(f, "wb") as fh:
            fh.write(b"PK\x03\x04 half a zip")
    raise OSError(28, "No space left on device")


def test_a_save_that_fails_halfway_keeps_the_previous_checkpoint(tmp_path, data, monkeypatch):
    """Issue 30, mutation 3: with a plain ``torch.save(obj, path)`` the old checkpoint would be torn."""
    ck = tmp_path / "ck.pt"
    LDS(**QUICK).fit(data, checkpoint=ck)
    before = ck.read_bytes()
    monkeypatch.setattr(lds_model.torch, "save", _torn_save)
    with pytest.raises(OSError, match="No space left"):
        LDS(**QUICK).fit(data, checkpoint=ck)
    monkeypatch.undo()
    assert ck.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.pt"]  # no .tmp-<pid> left behind
    assert len(LDS(**{**QUICK, "max_outer_iters": 3}).fit(data, resume=ck).history_) == 3


def test_atomic_save_removes_its_temp_file_and_fsyncs_before_the_rename(tmp_path, monkeypatch):
    path = tmp_path / "sub" / "f.pt"
    monkeypatch.setattr(lds_model.torch, "save", _torn_save)
    with pytest.raises(OSError):
        lds_model._atomic_save({"a": torch.ones(2)}, path)
    assert list((tmp_path / "sub").iterdir()) == []
    monkeypatch.undo()
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(lds_model.os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(lds_model.os, "replace", lambda a, b: (events.append("replace"), real_replace(a, b))[1])
    lds_model._atomic_save({"a": torch.ones(2)}, path)
    assert events[:2] == ["fsync", "replace"]
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.ones(2))
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["f.pt"]


# ----------------------------------------------------------------------------- bad input


def _edit(data, **changes):
    out = data.clone()
    for key, value in changes.items():
        setattr(out, key, value(out) if callable(value) else value)
    return out


def _label_99(d):
    y = d.y.clone()
    y[d.train_mask.nonzero()[0, 0]] = 99
    return y


BAD_DATA = {
    "skipped_class_ids": (dict(y=_label_99), ValueError, r"labels must be 0\.\.C-1 with every class present"),
    "one_class": (dict(y=lambda d: torch.zeros_like(d.y)), ValueError, "at least 2 classes"),
    "declared_num_classes_with_absent_class": (dict(num_classes_=5), ValueError, r"data\.num_classes_"),
    "float_labels": (dict(y=lambda d: d.y.float()), TypeError, "integer class labels"),
    "numpy_edge_index": (dict(edge_index=lambda d: d.edge_index.numpy()), TypeError, r"torch\.from_numpy"),
    "float_edge_index": (dict(edge_index=lambda d: d.edge_index.float()), TypeError, "integer node indices"),
}


@pytest.mark.parametrize("case", list(BAD_DATA))
def test_bad_data_is_a_clear_error(case, data):
    changes, exc, match = BAD_DATA[case]
    with pytest.raises(exc, match=match):
        LDS(**QUICK).fit(_edit(data, **changes))
    with pytest.raises(exc, match=match):
        GCNBaseline(max_steps=2).fit(_edit(data, **changes))


BAD_SETTINGS = [
    ({"weight_decay": math.nan}, ValueError, "weight_decay must be a finite number"),
    ({"outer_lr": math.inf}, ValueError, "outer_lr must be a finite number"),
    ({"outer_lr": "1"}, TypeError, "outer_lr must be a finite number"),
    ({"outer_lr_decay": -0.1}, ValueError, "outer_lr_decay must be a finite number in \\[0, inf\\)"),
    ({"inner_lr": math.nan}, ValueError, "inner_lr must be a finite number"),
    ({"inner_lr": -1.0, "learn_inner_lr": False}, ValueError, "inner_lr must be a finite number in \\(0, inf\\)"),
    ({"inner_tol": math.nan}, ValueError, "inner_tol must be a finite number"),
    ({"inner_eps": math.inf}, ValueError, "inner_eps must be a finite number"),
    ({"dropout": math.nan}, ValueError, "dropout must be a finite number"),
    ({"init_prob": math.nan}, ValueError, "init_prob must be a finite number"),
    ({"seed": 1.5}, TypeError, r"seed must be an int in \[0, 2\*\*63\)"),
    ({"seed": True}, TypeError, r"seed must be an int"),
    ({"seed": 2**70}, ValueError, r"seed must be an int in \[0, 2\*\*63\)"),
    ({"seed": -3}, ValueError, r"seed must be an int in \[0, 2\*\*63\)"),
]


@pytest.mark.parametrize(("settings", "exc", "match"), BAD_SETTINGS, ids=[str(s[0]) for s in BAD_SETTINGS])
def test_bad_settings_are_clear_errors(settings, exc, match, data):
    with pytest.raises(exc, match=match):
        LDS(**{**QUICK, **settings}).fit(data)


def test_baseline_seed_range_matches_lds(data):
    for seed, exc in ((-3, ValueError), (2**70, ValueError), (1.5, TypeError)):
        with pytest.raises(exc, match="seed must be an int"):
            GCNBaseline(seed=seed, max_steps=2).fit(data)


def test_a_fixed_inner_lr_outside_the_learned_range_is_fine(data):
    model = LDS(**{**QUICK, "max_outer_iters": 1}, inner_lr=0.1, learn_inner_lr=False).fit(data)
    assert model.inner_lr_ == 0.1


def _nan_x(d):
    x = d.x.clone()
    x[3, 1] = math.nan
    return x


BAD_PREDICT = {
    "nan_features": (lambda m, d: m.predict(_edit(d, x=_nan_x)), ValueError, "NaN"),
    "wrong_num_features": (lambda m, d: m.predict(_edit(d, x=lambda e: e.x[:, :2])), ValueError, "4 features"),
    "integer_mask": (lambda m, d: m.score(d, d.test_mask.long()), TypeError, "boolean tensor"),
    "index_mask": (lambda m, d: m.score(d, torch.tensor([0, 1, 2])), TypeError, "boolean tensor"),
    "short_mask": (lambda m, d: m.score(d, d.test_mask[:-1]), ValueError, r"shape \(18,\)"),
    "numpy_mask": (lambda m, d: m.score(d, d.test_mask.numpy()), TypeError, "boolean tensor"),
}


@pytest.mark.parametrize("case", list(BAD_PREDICT))
def test_bad_predict_and_score_input_is_a_clear_error(case, data, saved):
    call, exc, match = BAD_PREDICT[case]
    with pytest.raises(exc, match=match):
        call(saved[0], data)


def test_baseline_score_needs_a_boolean_mask(data):
    base = GCNBaseline(max_steps=3).fit(data)
    with pytest.raises(TypeError, match="boolean tensor"):
        base.score(data, data.test_mask.long())
    assert base.score(data, data.test_mask) == base.score(data)


# ----------------------------------------------------------------------------- CLI


@pytest.mark.parametrize("argv", [
    ["--dataset", "cora", "--seed", "-3", "--keep-edges", "0.5"],
    ["--dataset", "cora", "--seed", "-3"],
    ["--dataset", "wine", "--keep-edges", "0.5"],
    ["--dataset", "wine", "--outer-lr", "nan", "--no-baseline", "--quiet"],
    ["--dataset", "wine", "--no-baseline", "--quiet", "--resume", "RESUME"],
])
def test_cli_user_error_is_one_line(argv, tmp_path, capsys):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"junk")
    argv = [str(junk) if a == "RESUME" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err


def test_cli_exit_status_is_2_for_a_user_error():
    proc = subprocess.run([sys.executable, "-m", "lds", "--seed", "-3"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: --seed") and "Traceback" not in proc.stderr


def test_numpy_seed_is_accepted(data):
    assert LDS(**{**QUICK, "max_outer_iters": 1}, seed=np.int64(3)).fit(data).history_


def test_baseline_fits_data_without_an_edge_index_attribute():
    """Any object with x, y and boolean masks is accepted; a missing edge_index means no input graph (the
    baseline once read data.edge_index unconditionally: AttributeError outside PyG's Data)."""
    from types import SimpleNamespace

    from lds import GCNBaseline

    from .synthetic import planted_partition

    d = planted_partition(per_class=8, seed=1)
    plain = SimpleNamespace(x=d.x, y=d.y, train_mask=d.train_mask, val_mask=d.val_mask, test_mask=d.test_mask)
    model = GCNBaseline(graph="knn", k=3, seed=0).fit(plain)
    assert model.predict(plain).shape == (d.x.size(0),)
