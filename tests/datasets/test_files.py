"""``lds.datasets.files``: a user's graph from .npz or a CSV pair; every format gives the same Data; bad files
give one-line errors that name the file and the field."""

import numpy as np
import pytest
import torch
from lds.datasets import load_graph, load_graph_csv, load_graph_npz, split_labelled


def small_graph(seed: int = 0):
    rng = np.random.default_rng(seed)
    n = 24
    y = np.repeat([0, 1, 2], 8)
    x = rng.normal(size=(n, 4)) + y[:, None]
    y_semi = np.where(rng.random(n) < 0.5, y, -1)
    y_semi[[0, 1, 8, 9, 16, 17]] = [0, 0, 1, 1, 2, 2]  # two labelled per class at least
    edges = np.array([[i, j] for i in range(n) for j in range(i + 1, n) if y[i] == y[j] and (i + j) % 3 == 0])
    return x, y_semi, edges


def write_csv(path, ids, x, y, label="label"):
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(",".join(["id", *[f"f{j}" for j in range(x.shape[1])], label]) + "\n")
        for i, row in zip(ids, x):
            fh.write(",".join([i, *[repr(float(v)) for v in row], "" if y[ids.index(i)] == -1 else
                               str(y[ids.index(i)])]) + "\n")


def write_edges(path, ids, edges, header=True):
    with open(path, "w", encoding="utf-8") as fh:
        if header:
            fh.write("source,target\n")
        for i, j in edges:
            fh.write(f"{ids[i]},{ids[j]}\n")


@pytest.fixture
def graph_files(tmp_path):
    x, y, edges = small_graph()
    ids = [f"n{i:02d}" for i in range(len(y))]
    np.savez(tmp_path / "edge_index.npz", x=x, y=y, edge_index=edges.T)
    np.savez(tmp_path / "edges.npz", x=x, y=y, edges=edges)
    write_csv(tmp_path / "nodes.csv", ids, x, y)
    write_edges(tmp_path / "edges.csv", ids, edges)
    write_edges(tmp_path / "edges_noheader.csv", ids, edges, header=False)
    return tmp_path, x, y, edges, ids


def test_every_format_gives_the_same_graph(graph_files):
    folder, x, y, edges, ids = graph_files
    a = load_graph(folder / "edge_index.npz", seed=1)
    b = load_graph_npz(folder / "edges.npz", seed=1)
    c = load_graph(folder / "nodes.csv", edges=folder / "edges.csv", seed=1)
    d = load_graph_csv(folder / "nodes.csv", folder / "edges_noheader.csv", seed=1)
    for data in (a, b, c, d):
        assert data.num_nodes == len(y) and data.num_classes == 3
        torch.testing.assert_close(data.x, torch.tensor(x, dtype=torch.float32))
        assert torch.equal(data.y, torch.from_numpy(y))
        assert torch.equal(data.edge_index, a.edge_index) and data.edge_index.size(1) == 2 * len(edges)
        assert torch.equal(data.train_mask, a.train_mask) and torch.equal(data.val_mask, a.val_mask)
        assert getattr(data, "test_mask", None) is None
        assert torch.equal(data.train_mask | data.val_mask, torch.from_numpy(y >= 0))
        assert not (data.train_mask & data.val_mask).any()
        assert all(bool(data.train_mask[data.y == k].any()) for k in range(3))
    assert a.node_ids == list(range(len(y))) and c.node_ids == ids
    assert not torch.equal(load_graph(folder / "edges.npz", seed=2).val_mask, a.val_mask)  # seeded


def test_masks_are_used_when_given_and_no_edges_is_no_graph(tmp_path):
    x, y, _ = small_graph()
    labelled = np.flatnonzero(y >= 0)
    train, val, test = (np.zeros(len(y), bool) for _ in range(3))
    train[labelled[::3]], val[labelled[1::3]], test[labelled[2::3]] = True, True, True
    np.savez(tmp_path / "g.npz", x=x, y=y, train_mask=train, val_mask=val, test_mask=test)
    data = load_graph(tmp_path / "g.npz")
    for name, mask in (("train_mask", train), ("val_mask", val), ("test_mask", test)):
        assert torch.equal(getattr(data, name), torch.from_numpy(mask))
    assert data.edge_index.shape == (2, 0)
    # a test mask alone: the other labelled nodes are split into train and validation
    np.savez(tmp_path / "t.npz", x=x, y=y, test_mask=test)
    data = load_graph(tmp_path / "t.npz")
    assert torch.equal(data.test_mask, torch.from_numpy(test))
    assert torch.equal(data.train_mask | data.val_mask, torch.from_numpy((y >= 0) & ~test))


def bad_npz(tmp_path, **fields):
    x, y, edges = small_graph()
    arrays = {"x": x, "y": y, "edges": edges}
    arrays.update(fields)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("fields, match", [
    ({"x": None}, r"field 'x' is missing"),
    ({"x": np.zeros(24)}, r"field 'x' must be a 2-D numeric array"),
    ({"y": np.zeros(23, dtype=int)}, r"field 'y' must have shape \(24,\)"),
    ({"y": np.linspace(0, 2, 24)}, r"field 'y': labels must be integers"),
    ({"y": np.array(["a"] * 24)}, r"field 'y': labels must be integers"),
    ({"y": np.r_[np.zeros(12, int), np.full(12, 2)]}, r"field 'y': class 1 has no labelled node"),
    ({"y": np.full(24, -1)}, r"field 'y': no labelled node"),
    ({"edges": np.array([[0, 1, 2]])}, r"field 'edges' must have shape \(E, 2\)"),
    ({"edges": np.array([[0, 24]])}, r"field 'edges' has node indices outside \[0, 24\)"),
    ({"edges": None, "edge_index": np.array([[0], [1], [2]])}, r"field 'edge_index' must have shape \(2, E\)"),
    ({"edge_index": np.array([[0], [1]])}, r"'edge_index' \(2×E\) or 'edges' \(E×2\), not both"),
    ({"train_mask": np.ones(24, dtype=int), "val_mask": np.zeros(24, bool)}, r"field 'train_mask' must be a boolean"),
    ({"train_mask": np.zeros(24, bool)}, r"both 'train_mask' and 'val_mask' or neither"),
    ({"edge_idx": np.zeros((2, 1), int)}, r"unknown field 'edge_idx'"),
    ({"x": np.array([[1.0, np.nan]] * 24)}, r"field 'x' has NaN"),
])
def test_bad_npz_fields_are_one_line_errors_naming_file_and_field(tmp_path, fields, match):
    path = bad_npz(tmp_path, **fields)
    with pytest.raises(ValueError, match=match) as exc:
        load_graph(path)
    assert str(path) in str(exc.value) and "\n" not in str(exc.value)


def test_pickled_and_unreadable_files_are_refused(tmp_path):
    obj = tmp_path / "obj.npz"
    np.savez(obj, x=np.zeros((3, 2)), y=np.array([0, 1, None], dtype=object))
    with pytest.raises(ValueError, match="field 'y' cannot be read without pickle"):
        load_graph(obj)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="is not a readable .npz file"):
        load_graph(junk)
    pt = tmp_path / "graph.pt"
    torch.save({"x": torch.zeros(2, 2)}, pt)
    with pytest.raises(ValueError, match="pickled files are not accepted"):
        load_graph(pt)
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_graph(tmp_path / "missing.npz")


def test_bad_csv_files_name_file_line_and_column(graph_files):
    folder, x, y, edges, ids = graph_files
    nodes = folder / "nodes.csv"
    text = nodes.read_text().splitlines()
    cases = {
        "unknown_id": (None, "n00,n99\n", r"edges2.csv: node id 'n99' .* is not in .*unknown_id.csv's column 'id'"),
        "label": ("\n".join([text[0], text[1].rsplit(",", 1)[0] + ",cat", *text[2:]]) + "\n", None,
                  r"line 2: column 'label' must be an integer class"),
        "float_label": ("\n".join([text[0], text[1].rsplit(",", 1)[0] + ",1.5", *text[2:]]) + "\n", None,
                        r"column 'label': labels must be integers"),
        "feature": ("\n".join([text[0], "n00,abc," + text[1].split(",", 2)[2], *text[2:]]) + "\n", None,
                    r"line 2: feature column 'f0' must be a number"),
        "no_label": ("\n".join([text[0].replace("label", "klass"), *text[1:]]) + "\n", None,
                     r"no label column"),
        "duplicate": ("\n".join([*text, text[1]]) + "\n", None, r"repeats the node id 'n00'"),
        "short": ("\n".join([text[0], "n00,1.0", *text[2:]]) + "\n", None, r"line 2: 2 values"),
    }
    for name, (node_text, edge_text, match) in cases.items():
        npath, epath = folder / f"{name}.csv", folder / "edges2.csv"
        npath.write_text(node_text if node_text is not None else nodes.read_text())
        epath.write_text(edge_text if edge_text is not None else (folder / "edges.csv").read_text())
        with pytest.raises(ValueError, match=match) as exc:
            load_graph(npath, edges=epath)
        assert "\n" not in str(exc.value), name


def test_split_labelled_errors_when_too_few_labels():
    with pytest.raises(ValueError, match="at least 4 labelled rows are needed for 2 classes"):
        split_labelled(np.array([0, 0, 1, -1]), np.array([True, True, True, False]), 0.5, seed=0)
