"""The no-graph benchmarks of LDS (Franceschi, Niepert, Pontil & He, ICML 2019, Sec. 9.4.2 / Table 9.2):
Wine, Breast Cancer and Digits (bundled with scikit-learn) and 20 Newsgroups (10 categories, TF-IDF),
with stratified, seeded train / validation / test splits.

The validation set is the union of the two halves LDS uses (one for the outer objective, one for early
stopping); LDS splits it later.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import warnings
from pathlib import Path
from types import MappingProxyType

import numpy as np
import torch
from torch_geometric.data import Data

from ._paths import ENV_VAR, PathArg, cache_root, check_seed, data_root, network_available, sha256, writable_dir

#: (train, val) sizes; test is the rest (wine 148, breast_cancer 539, digits 1647, 20news 9307).
SPLITS = MappingProxyType({"wine": (10, 20), "breast_cancer": (10, 20), "digits": (50, 100), "20news": (100, 200)})
ALIASES = MappingProxyType({"cancer": "breast_cancer"})
NAMES = tuple(SPLITS)

NEWS_CATEGORIES = (
    "alt.atheism", "comp.sys.ibm.pc.hardware", "misc.forsale", "rec.autos", "rec.sport.hockey",
    "sci.crypt", "sci.electronics", "sci.med", "sci.space", "talk.politics.guns",
)
#: Documents per category in 20news-bydate, subset="all" (train + test): 9607 in total.
NEWS_COUNTS = MappingProxyType({
    "alt.atheism": 799, "comp.sys.ibm.pc.hardware": 982, "misc.forsale": 975, "rec.autos": 990,
    "rec.sport.hockey": 999, "sci.crypt": 991, "sci.electronics": 984, "sci.med": 990, "sci.space": 987,
    "talk.politics.guns": 910,
})
NEWS_SHAPE = (9607, 236)
NEWS_PKZ = "20news-bydate_py3.pkz"
_NEWS_CACHE_VERSION = 1


def _standardize(x: np.ndarray) -> np.ndarray:
    from sklearn.preprocessing import StandardScaler

    return StandardScaler().fit_transform(x)


def _news_home(root: PathArg, cache_dir: PathArg) -> tuple[Path, tempfile.TemporaryDirectory | None]:
    """The folder holding ``20news-bydate_py3.pkz`` (scikit-learn's data_home), downloading it only when
    no data directory is set. Returns a temporary folder to clean up if the cache could not be written."""
    base = data_root(root)
    if base is not None:
        for home in (base / "20newsgroups", base):
            if (home / NEWS_PKZ).is_file():
                return home, None
        raise FileNotFoundError(
            f"missing data file {NEWS_PKZ}: expected at {base / '20newsgroups' / NEWS_PKZ} (from root= or "
            f"${ENV_VAR}). Copy scikit-learn's 20 Newsgroups cache there, point root=/{ENV_VAR} at a folder "
            f"with 20newsgroups/{NEWS_PKZ}, or unset {ENV_VAR} (and root=) so that scikit-learn downloads it "
            "once into the cache. Nothing is downloaded while a data directory is set."
        )
    home = cache_root(cache_dir) / "20newsgroups"
    if (home / NEWS_PKZ).is_file():
        return home, None
    if not network_available("ndownloader.figshare.com"):
        raise FileNotFoundError(
            f"no 20 Newsgroups data: {ENV_VAR} is unset, root= was not given, the cache {home} lacks {NEWS_PKZ}, "
            f"and there is no network to download it. Set {ENV_VAR} (or root=) to a folder with "
            f"20newsgroups/{NEWS_PKZ}, or run once with network access."
        )
    from sklearn.datasets import fetch_20newsgroups

    tmp = None if writable_dir(home) is not None else tempfile.TemporaryDirectory(prefix="lds-20news-")
    target = Path(tmp.name) if tmp is not None else home
    try:  # scikit-learn downloads the official tarball, checks its SHA-256 and writes the .pkz
        fetch_20newsgroups(data_home=str(target), subset="train", download_if_missing=True)
    except Exception as exc:
        if tmp is not None:
            tmp.cleanup()
        raise FileNotFoundError(f"downloading 20 Newsgroups into {target} failed ({type(exc).__name__}: {exc}). "
                                f"Set {ENV_VAR} (or root=) to a folder with 20newsgroups/{NEWS_PKZ}.") from exc
    return target, tmp


def _read_news(home: Path) -> tuple[list[str], np.ndarray]:
    """Texts and labels of the ten LDS categories, subset "all", with the per-category counts checked."""
    from sklearn.datasets import fetch_20newsgroups

    path = home / NEWS_PKZ
    fix = (f"Replace {path} with a fresh copy (nothing was overwritten), or rebuild it with scikit-learn "
           f"(fetch_20newsgroups(data_home=...)); see {ENV_VAR}'s 20newsgroups/README.md.")
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):  # scikit-learn prints "Cache loading failed" on a bad file
            bunch = fetch_20newsgroups(data_home=str(home), subset="all", categories=list(NEWS_CATEGORIES),
                                       download_if_missing=False)
    except Exception as exc:
        detail = " ".join(printed.getvalue().replace("_", "").split()) or f"{type(exc).__name__}: {exc}"
        raise ValueError(f"cannot read {NEWS_PKZ} at {path} ({detail}): it is truncated, corrupt or was written by "
                         f"an incompatible scikit-learn/NumPy. {fix}") from exc
    counts = np.bincount(bunch.target, minlength=len(bunch.target_names)).tolist()
    observed = dict(zip(bunch.target_names, counts))
    if observed != NEWS_COUNTS:
        wrong = {c: (observed.get(c), n) for c, n in NEWS_COUNTS.items() if observed.get(c) != n}
        raise ValueError(f"{NEWS_PKZ} at {path} has unexpected document counts per category "
                         f"(category: (found, expected)) {wrong}; it is not the 20news-bydate data. {fix}")
    return list(bunch.data), np.asarray(bunch.target, dtype=np.int64)


def _news_features(root: PathArg, cache_dir: PathArg) -> tuple[np.ndarray, np.ndarray]:
    """TF-IDF of the ten LDS categories: English stop words removed, ``min_df=0.05``, no idf smoothing.

    The dense ``9607 x 236`` matrix is cached in ``cache_dir``, keyed by the SHA-256 of the ``.pkz``.
    """
    home, tmp = _news_home(root, cache_dir)
    try:
        key = sha256(home / NEWS_PKZ)[:16]
        cache = cache_root(cache_dir)
        cached = cache / f"20news10_tfidf_v{_NEWS_CACHE_VERSION}_{key}.npz"
        if cached.is_file():
            try:
                with np.load(cached, allow_pickle=False) as f:
                    x, y = f["x"], f["y"]
                if x.shape == NEWS_SHAPE and y.shape == NEWS_SHAPE[:1]:
                    return x, y
            except Exception:  # a damaged cache file is rebuilt, below
                pass
            warnings.warn(f"ignoring the damaged cache file {cached}; rebuilding it.", stacklevel=3)
        from sklearn.feature_extraction.text import CountVectorizer, TfidfTransformer

        texts, y = _read_news(home)
        counts = CountVectorizer(stop_words="english", min_df=0.05).fit_transform(texts)
        x = TfidfTransformer(smooth_idf=False).fit_transform(counts).toarray().astype(np.float32)
    finally:
        if tmp is not None:
            tmp.cleanup()
    if x.shape != NEWS_SHAPE:
        raise ValueError(f"20 Newsgroups TF-IDF has shape {x.shape}, expected {NEWS_SHAPE}; the scikit-learn "
                         "stop-word list or the data differ from the LDS setup.")
    if writable_dir(cache) is not None:
        part = cache / f".{cached.stem}.{os.getpid()}.npz"
        np.savez(part, x=x, y=y)
        os.replace(part, cached)
    return x, y


def stratified_split(
    y: np.ndarray, num_train: int, num_val: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Boolean masks: ``num_train`` nodes stratified by class, then ``num_val`` of the rest stratified;
    the test set is everything left (scikit-learn's ``train_test_split``, ``random_state=seed``).

    >>> train, val, test = stratified_split(np.array([0, 1] * 10), 4, 6, seed=0)
    >>> [int(m.sum()) for m in (train, val, test)]
    [4, 6, 10]
    """
    from sklearn.model_selection import train_test_split

    seed = check_seed(seed)
    idx = np.arange(len(y))
    train, rest = train_test_split(idx, train_size=num_train, stratify=y, random_state=seed)
    val, test = train_test_split(rest, train_size=num_val, stratify=y[rest], random_state=seed)
    masks = []
    for part in (train, val, test):
        mask = torch.zeros(len(y), dtype=torch.bool)
        mask[torch.from_numpy(part)] = True
        masks.append(mask)
    return masks[0], masks[1], masks[2]


def load_uci(name: str, seed: int, *, root: PathArg = None, cache_dir: PathArg = None) -> Data:
    """A no-graph LDS benchmark as ``Data`` with an empty ``edge_index`` and stratified, seeded masks.

    Splits of the LDS paper (Franceschi et al., 2019, Sec. 9.4.2), train / val / test:

    ============= ========================== ===== ===== ======
    name          features                   train val   test
    ============= ========================== ===== ===== ======
    wine          13, standardized           10    20    148
    breast_cancer 30, standardized           10    20    539
    digits        64, raw pixel counts       50    100   1647
    20news        236, TF-IDF (9607 docs)    100   200   9307
    ============= ========================== ===== ===== ======

    ``cancer`` is an alias of ``breast_cancer``. Wine, Breast Cancer and Digits ship with scikit-learn;
    20news reads ``20newsgroups/20news-bydate_py3.pkz`` from ``root`` / ``$LDS_DATA_DIR`` (or downloads it
    once into ``cache_dir`` when neither is set) and caches its TF-IDF matrix in ``cache_dir``.
    ``num_classes`` is set on the result.

    >>> data = load_uci("wine", seed=0)
    >>> tuple(int(m.sum()) for m in (data.train_mask, data.val_mask, data.test_mask))
    (10, 20, 148)
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, one of {', '.join(NAMES)}; got {type(name).__name__} {name!r}.")
    key = ALIASES.get(name.lower(), name.lower())
    if key not in SPLITS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(NAMES)} (alias: cancer).")
    seed = check_seed(seed)
    from sklearn import datasets as skd

    if key == "wine":
        x, y = skd.load_wine(return_X_y=True)
        x = _standardize(x)
    elif key == "breast_cancer":
        x, y = skd.load_breast_cancer(return_X_y=True)
        x = _standardize(x)
    elif key == "digits":
        x, y = skd.load_digits(return_X_y=True)
    else:
        x, y = _news_features(root, cache_dir)
    y = np.asarray(y, dtype=np.int64)
    train, val, test = stratified_split(y, *SPLITS[key], seed=seed)
    data = Data(x=torch.as_tensor(np.asarray(x), dtype=torch.float32), y=torch.from_numpy(y),
                edge_index=torch.empty(2, 0, dtype=torch.long), train_mask=train, val_mask=val, test_mask=test)
    data.num_classes = int(y.max()) + 1
    return data
