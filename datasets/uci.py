"""The LDS no-graph benchmarks (Franceschi et al., ICML 2019, Sec. 9.4.2): Wine, Breast Cancer,
Digits (scikit-learn) and 20 Newsgroups (10 categories, TF-IDF), with stratified, seeded splits.

The validation set is the union of the two halves LDS uses (one for the outer objective, one for
early stopping).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import Data

from ._paths import ENV_VAR, cache_root, data_root, network_available, sha256, writable_dir

#: (train, val) sizes; test is the rest.
SPLITS = {"wine": (10, 20), "breast_cancer": (10, 20), "digits": (50, 100), "20news": (100, 200)}
ALIASES = {"cancer": "breast_cancer"}
NAMES = tuple(SPLITS)

NEWS_CATEGORIES = (
    "alt.atheism", "comp.sys.ibm.pc.hardware", "misc.forsale", "rec.autos", "rec.sport.hockey",
    "sci.crypt", "sci.electronics", "sci.med", "sci.space", "talk.politics.guns",
)
#: Documents per category in 20news-bydate, subset="all" (train + test): 9607 in total.
NEWS_COUNTS = {
    "alt.atheism": 799, "comp.sys.ibm.pc.hardware": 982, "misc.forsale": 975, "rec.autos": 990,
    "rec.sport.hockey": 999, "sci.crypt": 991, "sci.electronics": 984, "sci.med": 990, "sci.space": 987,
    "talk.politics.guns": 910,
}
NEWS_TARBALL_SHA256 = "db13c646c0ddb98267c9049ec91f3bce264f1bfe6d1f4d52de42d2e9074ef711"
NEWS_PKZ = "20news-bydate_py3.pkz"


def _standardize(x: np.ndarray) -> np.ndarray:
    from sklearn.preprocessing import StandardScaler

    return StandardScaler().fit_transform(x)


def _news_features(
    root: str | os.PathLike | None, cache_dir: str | os.PathLike | None
) -> tuple[np.ndarray, np.ndarray]:
    """TF-IDF (English stop words removed, min_df = 5 %, no idf smoothing) of the 10 LDS categories."""
    cache = cache_root(cache_dir)
    cached = cache / "20news_tfidf_v1.npz"
    if cached.is_file():
        with np.load(cached) as f:
            return f["x"], f["y"]
    from sklearn.datasets import fetch_20newsgroups
    from sklearn.feature_extraction.text import CountVectorizer, TfidfTransformer

    fix = (f"Set {ENV_VAR} (or root=) to a folder with 20newsgroups/{NEWS_PKZ} (scikit-learn's cache), "
           "or run with network access so that scikit-learn downloads it once.")
    base = data_root(root)
    home: Path | None = None
    if base is not None:
        for cand in (base / "20newsgroups", base):
            if (cand / NEWS_PKZ).is_file():
                home = cand
                break
        if home is not None and (home / "20news-bydate.reconstructed.tar.gz").is_file():
            got = sha256(home / "20news-bydate.reconstructed.tar.gz")
            if got != NEWS_TARBALL_SHA256:
                raise ValueError(f"{home / '20news-bydate.reconstructed.tar.gz'} is corrupt (SHA-256 {got[:16]}…). "
                                 f"Replace it with a fresh copy. {fix}")
    if home is None:
        home = cache / "20newsgroups"
        if not (home / NEWS_PKZ).is_file() and not network_available():
            where = f"{base}" if base is not None else f"${ENV_VAR} (unset)"
            raise FileNotFoundError(
                f"missing {NEWS_PKZ}: not in {where} nor in the cache {home}, and no network. {fix}"
            )
    try:
        bunch = fetch_20newsgroups(data_home=str(home), subset="all", categories=list(NEWS_CATEGORIES),
                                   download_if_missing=not (home / NEWS_PKZ).is_file())
    except Exception as exc:  # a truncated or corrupt pickle
        raise ValueError(f"cannot read {home / NEWS_PKZ} ({type(exc).__name__}: {exc}); it is truncated or corrupt. "
                         f"Replace it with a fresh copy. {fix}") from exc
    counts = dict(zip(bunch.target_names, np.bincount(bunch.target, minlength=len(bunch.target_names)).tolist()))
    if counts != NEWS_COUNTS:
        raise ValueError(f"{home / NEWS_PKZ} has unexpected document counts per category {counts}; expected "
                         f"{NEWS_COUNTS}. Rebuild it with scikit-learn. {fix}")
    counts_matrix = CountVectorizer(stop_words="english", min_df=0.05).fit_transform(bunch.data)
    x = TfidfTransformer(smooth_idf=False).fit_transform(counts_matrix).toarray().astype(np.float32)
    y = np.asarray(bunch.target, dtype=np.int64)
    target = writable_dir(cache)
    if target is not None:
        tmp = target / f"20news_tfidf_v1.{os.getpid()}.npz"
        np.savez(tmp, x=x, y=y)
        os.replace(tmp, cached)
    return x, y


def stratified_split(y: np.ndarray, num_train: int, num_val: int, seed: int) -> tuple[torch.Tensor, ...]:
    """Boolean masks: ``num_train`` then ``num_val`` stratified by class, the rest is test."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    train, rest = train_test_split(idx, train_size=num_train, stratify=y, random_state=seed)
    val, test = train_test_split(rest, train_size=num_val, stratify=y[rest], random_state=seed)
    masks = []
    for part in (train, val, test):
        m = torch.zeros(len(y), dtype=torch.bool)
        m[torch.from_numpy(part)] = True
        masks.append(m)
    return tuple(masks)


def load_uci(
    name: str,
    seed: int = 0,
    *,
    root: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Data:
    """A no-graph benchmark as ``Data`` with an empty ``edge_index`` and stratified, seeded masks.

    ``wine`` and ``breast_cancer`` (alias ``cancer``) are standardised, ``digits`` is raw, ``20news``
    is TF-IDF (9607 × 236). Split sizes (train / val / test): 10/20/148, 10/20/539, 50/100/1647,
    100/200/9307.
    """
    if not isinstance(name, str) or ALIASES.get(name.lower(), name.lower()) not in SPLITS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(NAMES)} (alias: cancer).")
    name = ALIASES.get(name.lower(), name.lower())
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {seed!r}.")
    from sklearn import datasets as skd

    if name == "wine":
        x, y = skd.load_wine(return_X_y=True)
        x = _standardize(x)
    elif name == "breast_cancer":
        x, y = skd.load_breast_cancer(return_X_y=True)
        x = _standardize(x)
    elif name == "digits":
        x, y = skd.load_digits(return_X_y=True)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            x, y = _news_features(root, cache_dir)
    num_train, num_val = SPLITS[name]
    train, val, test = stratified_split(np.asarray(y), num_train, num_val, int(seed))
    return Data(x=torch.as_tensor(np.asarray(x), dtype=torch.float32), y=torch.as_tensor(np.asarray(y)).long(),
                edge_index=torch.empty(2, 0, dtype=torch.long), train_mask=train, val_mask=val, test_mask=test)
