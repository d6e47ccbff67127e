"""Omniglot: known counts, episode shapes and seeding, disjoint character splits, the one-shot runs, and
clear errors for missing or corrupt zips (also a full-set layout, built here from synthetic images)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from lds.datasets import load_omniglot, load_omniglot_runs

from ._helpers import require_data

SMALL = ["omniglot/images_background_small1.zip", "omniglot/images_background_small2.zip"]


@pytest.fixture(scope="module")
def chars():
    root = require_data(*SMALL)
    return load_omniglot(root)


def test_small_background_sets_counts(chars):
    # 136 + 156 characters, Greek and Latin shared by both sets: 242 distinct, 8 alphabets, 20 drawings each
    assert len(chars) == 242 and len(set(chars.names)) == 242
    assert chars.images.shape == (242, 20, 28, 28)
    assert len(chars.alphabets) == 8
    assert 0.0 <= float(chars.images.min()) and float(chars.images.max()) <= 1.0
    assert 0.02 < float(chars.images.mean()) < 0.2  # ink is 1 on a 0 background


def test_splits_are_disjoint_by_character_and_seeded(chars):
    train, val, test = chars.split((0.6, 0.2, 0.2), seed=0)
    assert len(train) + len(val) + len(test) == len(chars)
    a, b, c = set(train.names), set(val.names), set(test.names)
    assert not (a & b or a & c or b & c)
    again = chars.split((0.6, 0.2, 0.2), seed=0)
    assert again[0].names == train.names and chars.split((0.6, 0.2, 0.2), seed=1)[0].names != train.names


@pytest.mark.parametrize("rotations", [False, True])
def test_episodes_shapes_labels_and_seeding(chars, rotations):
    train, _, _ = chars.split(seed=0)
    sampler = train.episodes(n_way=5, k_shot=2, queries=3, seed=7, rotations=rotations)
    ep = sampler[4]
    assert ep.support.shape == (10, 1, 28, 28) and ep.query.shape == (15, 1, 28, 28)
    assert ep.support_labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert ep.query_labels.tolist() == [c for c in range(5) for _ in range(3)]
    assert len({c for c in ep.classes}) == 5
    same = train.episodes(n_way=5, k_shot=2, queries=3, seed=7, rotations=rotations)[4]
    assert torch.equal(same.support, ep.support) and torch.equal(same.query, ep.query)
    assert not torch.equal(sampler[5].support, ep.support)
    # support and query drawings of a class are distinct drawings
    char, rot = ep.classes[0]
    base = torch.rot90(train.images[char], rot, dims=(1, 2))
    rows = [int(torch.nonzero((base == img).flatten(1).all(1))[0, 0]) for img in (*ep.support[:2, 0], *ep.query[:3, 0])]
    assert len(set(rows)) == 5
    with pytest.raises(ValueError, match="exceeds the 20 drawings"):
        train.episodes(5, 10, 11, seed=0)
    with pytest.raises(ValueError, match="n_way"):
        train.episodes(10**6, 1, 1, seed=0)


def test_official_one_shot_runs():
    root = require_data("omniglot/all_runs.zip")
    runs = load_omniglot_runs(root)
    assert len(runs) == 20
    for run in runs:
        assert run.train.shape == (20, 1, 28, 28) and run.test.shape == (20, 1, 28, 28)
        assert sorted(run.test_labels.tolist()) == list(range(20))  # one test item per class
    assert runs[0].test_labels[:3].tolist() == [7, 8, 1]  # run01: item01 -> class08, item02 -> class09, ...


def _png(seed: int) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    img = Image.fromarray(((rng.random((105, 105)) > 0.1) * 255).astype(np.uint8)).convert("1")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _fake_set(path: Path, top: str, alphabets: dict[str, int]) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        for alphabet, n_chars in alphabets.items():
            for c in range(1, n_chars + 1):
                for d in range(1, 21):
                    zf.writestr(f"{top}/{alphabet}/character{c:02d}/{c:04d}_{d:02d}.png", _png(c * 100 + d))


def test_full_set_layout_is_accepted_and_evaluation_is_meta_test(tmp_path):
    folder = tmp_path / "omniglot"
    folder.mkdir()
    _fake_set(folder / "images_background.zip", "images_background", {"A": 4, "B": 3})
    _fake_set(folder / "images_evaluation.zip", "images_evaluation", {"C": 3})
    with pytest.warns(UserWarning, match="no known SHA-256"):
        chars = load_omniglot(tmp_path, image_size=14)
    assert len(chars) == 10 and chars.images.shape == (10, 20, 14, 14)
    train, val, test = chars.split((0.6, 0.4, 0.0), seed=0)
    assert sorted(test.names) == ["C/character01", "C/character02", "C/character03"]
    assert len(train) + len(val) == 7


def test_missing_and_corrupt_zips_are_clear_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("LDS_DATA_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match="LDS_DATA_DIR"):
        load_omniglot()
    folder = tmp_path / "omniglot"
    folder.mkdir()
    with pytest.raises(FileNotFoundError, match="missing Omniglot file images_background_small1.zip"):
        load_omniglot(tmp_path)
    (folder / "images_background_small1.zip").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="corrupt: SHA-256"):  # a known file with the wrong digest
        load_omniglot(tmp_path)
    (folder / "images_background.zip").write_bytes(b"not a zip either")
    with pytest.raises(ValueError, match="not a readable zip"):  # no known digest: the zip itself is checked
        load_omniglot(tmp_path)
    with pytest.raises(ValueError, match="image_size"):
        load_omniglot(tmp_path, image_size=0)
