"""A user's own graph from files: ``.npz`` (numpy arrays) or a CSV pair (nodes, edges), as a PyG ``Data``.

Nothing here runs code from a file: ``.npz`` is read with ``np.load(allow_pickle=False)`` and CSV as text.

- ``.npz``: ``x`` (N×F numbers), ``y`` (N integers, ``-1`` for unlabelled), optional ``edge_index`` (2×E) or
  ``edges`` (E×2) of node indices, optional boolean ``train_mask``, ``val_mask`` (both or neither) and
  ``test_mask``;
- CSV: a node file with a header line: an ``id`` column (else the first column), a ``label`` (or ``y``)
  column (an integer class, ``-1`` or empty for unlabelled) and numeric feature columns; an optional edge
  file with two node-id columns per line (a first line in which neither entry is a node id is a header).

Labels are classes ``0..C-1``, each with at least one labelled node. Without masks the labelled nodes are
split, seeded and stratified, into train and validation (:func:`split_labelled`) and there is no test set.
Every problem is a ``ValueError`` whose one line names the file and the field.

>>> import numpy as np, tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "g.npz")
>>> np.savez(path, x=np.eye(6), y=np.array([0, 0, 0, 1, 1, 1]), edges=np.array([[0, 1], [3, 4]]))
>>> data = load_graph_npz(path, seed=0)
>>> data.num_nodes, data.edge_index.shape[1], int(data.train_mask.sum()), int(data.val_mask.sum())
(6, 4, 2, 4)
"""

from __future__ import annotations

import csv
import math
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch_geometric.data import Data

from ._paths import check_seed

NPZ_FIELDS = ("x", "y", "edge_index", "edges", "train_mask", "val_mask", "test_mask")


def split_labelled(codes: np.ndarray, labelled: np.ndarray, validation_fraction: float, seed: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Seeded, stratified split of the labelled rows into (training rows, validation rows), as boolean masks.

    Per class, ``round(validation_fraction · n_c)`` rows go to validation, but at least one stays in training;
    if that leaves fewer than 2 validation rows (LDS needs two halves), rows move from the classes with the most
    training rows.

    >>> train, val = split_labelled(np.array([0, 0, 1, 1, -1]), np.array([1, 1, 1, 1, 0], bool), 0.5, seed=0)
    >>> train.sum(), val.sum(), bool((train & val).any())
    (np.int64(2), np.int64(2), False)
    """
    rng = np.random.default_rng(check_seed(seed))
    train = np.zeros(len(codes), dtype=bool)
    val = np.zeros(len(codes), dtype=bool)
    spare: list[np.ndarray] = []  # per class, its training rows beyond the first (may move to validation)
    for c in np.unique(codes[labelled]):
        rows = rng.permutation(np.flatnonzero(labelled & (codes == c)))
        n_val = min(int(math.floor(validation_fraction * rows.size + 0.5)), rows.size - 1)
        val[rows[:n_val]] = True
        train[rows[n_val:]] = True
        spare.append(rows[n_val + 1:])
    while val.sum() < 2:
        biggest = max(range(len(spare)), key=lambda i: spare[i].size) if spare else -1
        if biggest < 0 or spare[biggest].size == 0:
            num_classes = len(spare)
            raise ValueError(
                f"at least {num_classes + 2} labelled rows are needed for {num_classes} classes: one per class to "
                f"train on and two for the validation halves LDS fits its graph and early-stops on; got "
                f"{int(labelled.sum())}. Label more rows."
            )
        val[spare[biggest][-1]] = True
        train[spare[biggest][-1]] = False
        spare[biggest] = spare[biggest][:-1]
    return train, val


def _labels(y: np.ndarray, where: str) -> np.ndarray:
    """Integer labels ``-1`` or ``0..C-1`` with every class labelled at least once."""
    if y.dtype.kind == "f":
        if not np.isfinite(y).all() or (y != np.round(y)).any():
            bad = y[~np.isfinite(y) | (y != np.round(y))][:3].tolist()
            raise ValueError(f"{where}: labels must be integers (-1 for unlabelled), found {bad}.")
        y = y.astype(np.int64)
    elif y.dtype.kind not in "iu":
        raise ValueError(f"{where}: labels must be integers (-1 for unlabelled), got dtype {y.dtype}.")
    y = y.astype(np.int64)
    if (y < -1).any():
        raise ValueError(f"{where}: labels must be -1 (unlabelled) or classes 0..C-1, found {int(y.min())}.")
    if not (y >= 0).any():
        raise ValueError(f"{where}: no labelled node (every label is -1); label at least one node per class.")
    num_classes = int(y.max()) + 1
    missing = sorted(set(range(num_classes)) - set(np.unique(y[y >= 0]).tolist()))
    if missing:
        raise ValueError(f"{where}: class {missing[0]} has no labelled node (classes must be 0..C-1 = "
                         f"0..{num_classes - 1}, each labelled at least once; {len(missing)} missing): relabel them "
                         "consecutively.")
    if num_classes < 2:
        raise ValueError(f"{where}: every labelled node has class 0; at least 2 classes are needed.")
    return y


def _masks(masks: dict[str, np.ndarray | None], y: np.ndarray, seed: int, validation_fraction: float,
           path: str) -> dict[str, torch.Tensor]:
    n = len(y)
    given = {k: v for k, v in masks.items() if v is not None}
    for name, mask in given.items():
        if mask.dtype != bool or mask.shape != (n,):
            raise ValueError(f"{path}: field '{name}' must be a boolean array of shape ({n},), got {mask.dtype} of "
                             f"shape {mask.shape}.")
        if (mask & (y < 0)).any():
            raise ValueError(f"{path}: field '{name}' selects {int((mask & (y < 0)).sum())} unlabelled nodes (y = -1).")
    if ("train_mask" in given) != ("val_mask" in given):
        raise ValueError(f"{path}: give both 'train_mask' and 'val_mask' or neither (then the labelled nodes are "
                         "split into train and validation).")
    if "train_mask" not in given:
        if "test_mask" in given:
            labelled = (y >= 0) & ~given["test_mask"]
        else:
            labelled = y >= 0
        try:
            train, val = split_labelled(y, labelled, validation_fraction, seed)
        except ValueError as exc:
            raise ValueError(f"{path}: field 'y': {exc}") from None
        given["train_mask"], given["val_mask"] = train, val
    names = list(given)
    for a in range(len(names)):
        for b in range(a + 1, len(names)):
            if (given[names[a]] & given[names[b]]).any():
                raise ValueError(f"{path}: fields '{names[a]}' and '{names[b]}' overlap; masks must be disjoint.")
    if not given["train_mask"].any() or given["val_mask"].sum() < 2:
        raise ValueError(f"{path}: 'train_mask' must select at least 1 node and 'val_mask' at least 2.")
    return {k: torch.from_numpy(v.copy()) for k, v in given.items()}


def _edge_index(edges: np.ndarray, n: int, where: str) -> torch.Tensor:
    if edges.dtype.kind == "f" and edges.size and (edges == np.round(edges)).all():
        edges = edges.astype(np.int64)
    if edges.size and edges.dtype.kind not in "iu":
        raise ValueError(f"{where} must hold integer node indices, got dtype {edges.dtype}.")
    edges = edges.astype(np.int64).reshape(2, -1) if edges.size == 0 else edges.astype(np.int64)
    if edges.size and (edges.min() < 0 or edges.max() >= n):
        raise ValueError(f"{where} has node indices outside [0, {n}): min {int(edges.min())}, max {int(edges.max())}.")
    pairs = torch.from_numpy(edges)
    return torch.cat([pairs, pairs.flip(0)], dim=1) if pairs.numel() else torch.empty(2, 0, dtype=torch.long)


def _data(x: np.ndarray, y: np.ndarray, edge_index: torch.Tensor, masks: dict[str, torch.Tensor],
          node_ids: list[Any]) -> Data:
    data = Data(x=torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), y=torch.from_numpy(y),
                edge_index=edge_index, **masks)
    data.num_classes = int(y.max()) + 1
    data.node_ids = node_ids
    return data


def _check_args(path: Any, seed: int, validation_fraction: float) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a file path (str or os.PathLike), got {type(path).__name__}.")
    check_seed(seed)
    if isinstance(validation_fraction, bool) or not isinstance(validation_fraction, (int, float)) \
            or not 0.0 < float(validation_fraction) < 1.0:
        raise ValueError(f"validation_fraction must be a number in (0, 1), got {validation_fraction!r}.")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file.")
    return path


def load_graph_npz(path: str | os.PathLike, *, seed: int = 0, validation_fraction: float = 0.5) -> Data:
    """A graph from a ``.npz`` file (see the module docstring); ``node_ids`` are ``0..N-1``."""
    path = _check_args(path, seed, validation_fraction)
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:  # a plain .npy of objects, or not numpy
        raise ValueError(f"{path} is not a readable .npz file ({type(exc).__name__}: {' '.join(str(exc).split())}); "
                         "write it with numpy.savez(path, x=..., y=..., edge_index=...).") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"{path} is a single .npy array, not an .npz archive of named fields; write it with "
                         "numpy.savez(path, x=..., y=..., edge_index=...).")
    try:
        with archive as f:
            names = list(f.files)
            unknown = sorted(set(names) - set(NPZ_FIELDS))
            if unknown:
                raise ValueError(f"{path}: unknown field '{unknown[0]}' (known: {', '.join(NPZ_FIELDS)}).")
            arrays = {}
            for name in names:
                try:
                    arrays[name] = f[name]
                except ValueError as exc:  # an object array needs pickle, which is refused
                    raise ValueError(f"{path}: field '{name}' cannot be read without pickle ({exc}); store numbers "
                                     "or booleans.") from None
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ValueError(f"{path} is not a readable .npz file ({type(exc).__name__}: {exc}); write it with "
                         "numpy.savez(path, x=..., y=..., edge_index=...).") from None
    for name in ("x", "y"):
        if name not in arrays:
            raise ValueError(f"{path}: field '{name}' is missing (needed: x (N×F), y (N,); optional: edge_index "
                             "or edges, train_mask, val_mask, test_mask).")
    x, y = arrays["x"], arrays["y"]
    if x.ndim != 2 or x.shape[0] == 0 or x.dtype.kind not in "fiub":
        raise ValueError(f"{path}: field 'x' must be a 2-D numeric array (N×F), got {x.dtype} of shape {x.shape}.")
    x = x.astype(np.float64)
    if not np.isfinite(x).all():
        raise ValueError(f"{path}: field 'x' has NaN or infinite values in {int((~np.isfinite(x)).any(1).sum())} "
                         "rows; impute or drop them.")
    n = x.shape[0]
    if y.shape != (n,):
        raise ValueError(f"{path}: field 'y' must have shape ({n},) (one label per row of x), got {y.shape}.")
    y = _labels(y, f"{path}: field 'y'")
    if "edge_index" in arrays and "edges" in arrays:
        raise ValueError(f"{path}: give 'edge_index' (2×E) or 'edges' (E×2), not both.")
    if "edge_index" in arrays:
        e = arrays["edge_index"]
        if e.ndim != 2 or e.shape[0] != 2:
            raise ValueError(f"{path}: field 'edge_index' must have shape (2, E), got {e.shape}.")
        edge_index = _edge_index(e, n, f"{path}: field 'edge_index'")
    elif "edges" in arrays:
        e = arrays["edges"]
        if e.ndim != 2 or e.shape[1] != 2:
            raise ValueError(f"{path}: field 'edges' must have shape (E, 2), got {e.shape}.")
        edge_index = _edge_index(e.T, n, f"{path}: field 'edges'")
    else:
        edge_index = torch.empty(2, 0, dtype=torch.long)
    masks = _masks({k: arrays.get(k) for k in ("train_mask", "val_mask", "test_mask")}, y, seed,
                   validation_fraction, path)
    return _data(x, y, edge_index, masks, list(range(n)))


def _read_csv(path: str) -> list[list[str]]:
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = [[c.strip() for c in row] for row in csv.reader(fh) if any(c.strip() for c in row)]
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not a UTF-8 text (CSV) file ({exc.reason}).") from None
    if not rows:
        raise ValueError(f"{path} is empty.")
    return rows


def load_graph_csv(features: str | os.PathLike, edges: str | os.PathLike | None = None, *, seed: int = 0,
                   validation_fraction: float = 0.5) -> Data:
    """A graph from a node CSV (id, label, features) and an optional edge CSV (see the module docstring);
    ``node_ids`` holds the ids of the node file, in its order."""
    fpath = _check_args(features, seed, validation_fraction)
    rows = _read_csv(fpath)
    header, body = rows[0], rows[1:]
    if not body:
        raise ValueError(f"{fpath}: no node rows after the header line {header}.")
    lower = [h.lower() for h in header]
    id_col = lower.index("id") if "id" in lower else 0
    label_names = [h for h in ("label", "y") if h in lower]
    if not label_names:
        raise ValueError(f"{fpath}: no label column: the header {header} needs a column named 'label' (or 'y'); "
                         "leave it empty or -1 for unlabelled nodes.")
    label_col = lower.index(label_names[0])
    feature_cols = [i for i in range(len(header)) if i not in (id_col, label_col)]
    if not feature_cols:
        raise ValueError(f"{fpath}: no feature columns beside '{header[id_col]}' and '{header[label_col]}'.")
    ids: list[str] = []
    labels = np.empty(len(body), dtype=np.float64)
    x = np.empty((len(body), len(feature_cols)))
    for r, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise ValueError(f"{fpath}, line {r}: {len(row)} values, but the header has {len(header)} columns.")
        ids.append(row[id_col])
        text = row[label_col]
        try:
            labels[r - 2] = -1.0 if text == "" else float(text)
        except ValueError:
            raise ValueError(f"{fpath}, line {r}: column '{header[label_col]}' must be an integer class (or -1 / "
                             f"empty for unlabelled), got {text!r}.") from None
        for j, c in enumerate(feature_cols):
            try:
                x[r - 2, j] = float(row[c])
            except ValueError:
                raise ValueError(f"{fpath}, line {r}: feature column '{header[c]}' must be a number, got "
                                 f"{row[c]!r}.") from None
    index = {}
    for i, node in enumerate(ids):
        if node in index:
            raise ValueError(f"{fpath}: column '{header[id_col]}' repeats the node id {node!r} (lines "
                             f"{index[node] + 2} and {i + 2}); ids must be unique.")
        index[node] = i
    if not np.isfinite(x).all():
        raise ValueError(f"{fpath}: feature values NaN or infinite in {int((~np.isfinite(x)).any(1).sum())} rows; "
                         "impute or drop them.")
    y = _labels(labels, f"{fpath}: column '{header[label_col]}'")
    edge_index = torch.empty(2, 0, dtype=torch.long)
    if edges is not None:
        epath = _check_args(edges, seed, validation_fraction)
        erows = _read_csv(epath)
        if len(erows[0]) == 2 and erows[0][0] not in index and erows[0][1] not in index:
            erows = erows[1:]  # a header line: neither entry is a node id
        pairs = np.empty((len(erows), 2), dtype=np.int64)
        for r, row in enumerate(erows):
            if len(row) != 2:
                raise ValueError(f"{epath}: each line must hold two node ids, found {row}.")
            for j in (0, 1):
                if row[j] not in index:
                    raise ValueError(f"{epath}: node id {row[j]!r} (in edge {row}) is not in {fpath}'s column "
                                     f"'{header[id_col]}'.")
                pairs[r, j] = index[row[j]]
        edge_index = _edge_index(pairs.T, len(ids), f"{epath}")
    masks = _masks({"train_mask": None, "val_mask": None, "test_mask": None}, y, seed, validation_fraction, fpath)
    return _data(x, y, edge_index, masks, ids)


def load_graph(path: str | os.PathLike, *, edges: str | os.PathLike | None = None, seed: int = 0,
               validation_fraction: float = 0.5) -> Data:
    """``.npz`` → :func:`load_graph_npz`; ``.csv`` → :func:`load_graph_csv` (with ``edges``); anything else (a
    pickled ``.pt`` in particular, whose loading could run code) is refused with a ValueError."""
    suffix = Path(os.fspath(path)).suffix.lower()
    if suffix == ".npz":
        if edges is not None:
            raise ValueError(f"{os.fspath(path)}: an .npz file holds its own edges (edge_index or edges); drop the "
                             "edge file.")
        return load_graph_npz(path, seed=seed, validation_fraction=validation_fraction)
    if suffix == ".csv":
        return load_graph_csv(path, edges, seed=seed, validation_fraction=validation_fraction)
    if suffix in (".pt", ".pth", ".pkl", ".pickle"):
        raise ValueError(f"{os.fspath(path)}: pickled files are not accepted (loading one could run code): save the "
                         "arrays with numpy.savez(path, x=..., y=..., edge_index=...) or call LDS.fit(data) from "
                         "Python with your PyG Data.")
    raise ValueError(f"{os.fspath(path)}: unknown file type {suffix!r}; use a .npz file or a node/edge CSV pair.")
