"""Omniglot (Lake et al., 2015) for few-shot learning: characters, N-way K-shot episodes, the 20 one-shot runs.

Files, under ``root`` or ``$LDS_DATA_DIR/omniglot`` (read only, never written):

- ``images_background.zip`` (964 characters, 30 alphabets) and ``images_evaluation.zip`` (659 characters,
  20 alphabets): the full sets, used when present;
- ``images_background_small1.zip`` and ``images_background_small2.zip``: the authors' minimal background
  sets (136 + 156 characters; Greek and Latin are in both and are counted once: 242 characters);
- ``all_runs.zip``: the 20 official 20-way one-shot classification runs.

Every zip is checked by SHA-256 against the known digests below or a ``SHA256SUMS`` file beside it;
a zip with no known digest (e.g. a full set we could not hash offline) is checked by its CRCs instead,
with a warning. Images are read with Pillow, inverted so that ink is 1, and resized (box filter) to
``image_size`` (28 by default).

Meta-train / meta-val / meta-test are disjoint sets of *characters* (:meth:`OmniglotCharacters.split`).
With the full sets, the evaluation alphabets are the meta-test set. Episodes (:class:`EpisodeSampler`)
are seeded: episode ``i`` of a sampler depends only on ``(seed, i)``, so it can be drawn in any order
and on any process. The 90° rotations may be added as extra classes (``rotations=True``).

>>> from lds.datasets import load_omniglot
>>> chars = load_omniglot()                                          # doctest: +SKIP
>>> train, val, test = chars.split((0.6, 0.2, 0.2), seed=0)          # doctest: +SKIP
>>> ep = train.episodes(n_way=5, k_shot=1, queries=15, seed=0)[0]   # doctest: +SKIP
>>> ep.support.shape, ep.query.shape                                 # doctest: +SKIP
(torch.Size([5, 1, 28, 28]), torch.Size([75, 1, 28, 28]))
"""

from __future__ import annotations

import io
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np
import torch
from torch import Tensor

from ._paths import ENV_VAR, PathArg, data_root, sha256

__all__ = ["Episode", "EpisodeSampler", "OmniglotCharacters", "OneShotRun", "load_omniglot", "load_omniglot_runs"]

KNOWN_SHA256 = MappingProxyType({
    "all_runs.zip": "437c1eeab0af8484112e1b4cc0f3d541ec727f7c47b9b202da738af9dfd6c325",
    "images_background_small1.zip": "f38eb80f801274ac2b4dff5b24289016bfaba4a7d5bb50deebf27104ad6cb8a4",
    "images_background_small2.zip": "3ccaa407515a8778e5d0861875af38b17e418f301ad5bb3b5a6b65d901a41c7f",
})
FULL = ("images_background.zip", "images_evaluation.zip")
SMALL = ("images_background_small1.zip", "images_background_small2.zip")
_HOW = ("Put the Omniglot zips (github.com/brendenlake/omniglot, folder python/) in $" + ENV_VAR + "/omniglot "
        "or pass root= to the folder that holds them.")


# ----------------------------------------------------------------------------- files


def _folder(root: PathArg) -> Path:
    base = data_root(root)
    if base is None:
        raise FileNotFoundError(f"no Omniglot data: set ${ENV_VAR} or pass root=. {_HOW}")
    return base / "omniglot" if (base / "omniglot").is_dir() else base


def _sums_file(folder: Path) -> dict[str, str]:
    path = folder / "SHA256SUMS"
    out: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2:
                out[parts[1].lstrip("*")] = parts[0].lower()
    return out


def _open_zip(path: Path) -> zipfile.ZipFile:
    """Open a verified zip: SHA-256 when a digest is known, else the CRC of every member."""
    if not path.is_file():
        raise FileNotFoundError(f"missing Omniglot file {path.name}: expected at {path}. {_HOW}")
    expected = _sums_file(path.parent).get(path.name) or KNOWN_SHA256.get(path.name)
    if expected is not None:
        got = sha256(path)
        if got != expected:
            raise ValueError(f"Omniglot file {path.name} at {path} is corrupt: SHA-256 {got}, expected "
                             f"{expected}. Replace it with a fresh copy. {_HOW}")
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise ValueError(f"Omniglot file {path.name} at {path} is not a readable zip ({exc}). {_HOW}") from exc
    if expected is None:
        bad = zf.testzip()
        if bad is not None:
            raise ValueError(f"Omniglot file {path.name} at {path} is corrupt: member {bad} fails its CRC. {_HOW}")
        warnings.warn(f"no known SHA-256 for {path.name}: checked its CRCs only. Add its digest to a SHA256SUMS "
                      "file beside it to pin the exact file.", stacklevel=3)
    return zf


def _read_image(data: bytes, size: int) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        ink = Image.fromarray(((1 - (np.asarray(im.convert("L"), dtype=np.float32) / 255.0)) * 255).astype(np.uint8))
        if ink.size != (size, size):
            ink = ink.resize((size, size), Image.Resampling.BOX)
        return np.asarray(ink, dtype=np.float32) / 255.0


# ----------------------------------------------------------------------------- characters and episodes


@dataclass(frozen=True)
class Episode:
    """One N-way K-shot task: support/query images ``(n, 1, S, S)`` and labels in ``[0, N)``."""

    support: Tensor
    support_labels: Tensor
    query: Tensor
    query_labels: Tensor
    classes: tuple[tuple[int, int], ...]  # (character index, rotation k: k·90°) of label 0..N-1


class EpisodeSampler(Sequence[Episode]):
    """Seeded N-way K-shot episodes over a set of characters; ``sampler[i]`` depends only on ``(seed, i)``."""

    def __init__(self, chars: OmniglotCharacters, n_way: int, k_shot: int, queries: int, seed: int,
                 num_episodes: int = 10**9, rotations: bool = False) -> None:
        for name, v in (("n_way", n_way), ("k_shot", k_shot), ("queries", queries)):
            if isinstance(v, bool) or not isinstance(v, int) or v < (0 if name == "queries" else 1):
                raise ValueError(f"{name} must be a positive int, got {v!r}.")
        drawings = chars.images.size(1)
        if k_shot + queries > drawings:
            raise ValueError(f"k_shot + queries = {k_shot + queries} exceeds the {drawings} drawings per character.")
        num_classes = len(chars) * (4 if rotations else 1)
        if n_way > num_classes:
            raise ValueError(f"n_way={n_way} exceeds the {num_classes} classes of this split "
                             f"({len(chars)} characters{', x4 rotations' if rotations else ''}).")
        self.chars, self.n_way, self.k_shot, self.queries = chars, n_way, k_shot, queries
        self.seed, self.num_episodes, self.rotations = int(seed), int(num_episodes), bool(rotations)

    def __len__(self) -> int:
        return self.num_episodes

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if not 0 <= i < self.num_episodes:
            raise IndexError(f"episode {i} out of range [0, {self.num_episodes}).")
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + int(i))
        num_classes = len(self.chars) * (4 if self.rotations else 1)
        picked = torch.randperm(num_classes, generator=g)[: self.n_way].tolist()
        drawings = self.chars.images.size(1)
        sup, qry, classes = [], [], []
        for cls in picked:
            char, rot = divmod(cls, 4) if self.rotations else (cls, 0)
            order = torch.randperm(drawings, generator=g)[: self.k_shot + self.queries]
            imgs = self.chars.images[char, order]
            if rot:
                imgs = torch.rot90(imgs, rot, dims=(1, 2))
            sup.append(imgs[: self.k_shot])
            qry.append(imgs[self.k_shot:])
            classes.append((char, rot))
        labels = torch.arange(self.n_way)
        return Episode(torch.cat(sup).unsqueeze(1), labels.repeat_interleave(self.k_shot),
                       torch.cat(qry).unsqueeze(1), labels.repeat_interleave(self.queries), tuple(classes))

    def __iter__(self) -> Iterator[Episode]:
        for i in range(len(self)):
            yield self[i]


@dataclass
class OmniglotCharacters:
    """Images ``(C, 20, S, S)`` (ink = 1) of C characters, with their ``names`` (``alphabet/characterNN``)."""

    images: Tensor
    names: list[str]
    sources: list[str]  # the zip each character came from

    def __len__(self) -> int:
        return len(self.names)

    @property
    def alphabets(self) -> list[str]:
        return sorted({n.split("/")[0] for n in self.names})

    def subset(self, index: Sequence[int]) -> OmniglotCharacters:
        idx = list(index)
        return OmniglotCharacters(self.images[idx], [self.names[i] for i in idx], [self.sources[i] for i in idx])

    def split(self, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2), seed: int = 0,
              ) -> tuple[OmniglotCharacters, OmniglotCharacters, OmniglotCharacters]:
        """Meta-train / meta-val / meta-test by character (disjoint), seeded.

        With the full sets loaded, the evaluation characters are the meta-test set and ``fractions``
        divides the background characters between meta-train and meta-val (the third entry is ignored).
        """
        if len(fractions) != 3 or any(f < 0 for f in fractions) or sum(fractions) <= 0:
            raise ValueError(f"fractions must be three non-negative numbers, got {fractions!r}.")
        evaluation = [i for i, s in enumerate(self.sources) if s == "images_evaluation.zip"]
        pool = [i for i, s in enumerate(self.sources) if s != "images_evaluation.zip"]
        g = torch.Generator().manual_seed(int(seed))
        pool = [pool[j] for j in torch.randperm(len(pool), generator=g).tolist()]
        if evaluation:
            n_train = round(len(pool) * fractions[0] / (fractions[0] + fractions[1]))
            return self.subset(pool[:n_train]), self.subset(pool[n_train:]), self.subset(evaluation)
        total = sum(fractions)
        n_train = round(len(pool) * fractions[0] / total)
        n_val = round(len(pool) * fractions[1] / total)
        return (self.subset(pool[:n_train]), self.subset(pool[n_train:n_train + n_val]),
                self.subset(pool[n_train + n_val:]))

    def episodes(self, n_way: int, k_shot: int, queries: int, seed: int, num_episodes: int = 10**9,
                 rotations: bool = False) -> EpisodeSampler:
        """Seeded N-way K-shot episodes with ``queries`` query images per class."""
        return EpisodeSampler(self, n_way, k_shot, queries, seed, num_episodes, rotations)


def load_omniglot(root: PathArg = None, *, image_size: int = 28, sets: Sequence[str] | None = None,
                  ) -> OmniglotCharacters:
    """All characters of the available Omniglot sets (the full ones if present, else the two small ones).

    Args:
        root: folder holding ``omniglot/`` (or the zips themselves); default ``$LDS_DATA_DIR``.
        image_size: side of the resized images.
        sets: zip file names to read (default: ``images_background.zip`` and ``images_evaluation.zip`` when
            present, else the small background sets).
    """
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be a positive int, got {image_size!r}.")
    folder = _folder(root)
    if sets is None:
        sets = [f for f in FULL if (folder / f).is_file()] or list(SMALL)
    images: list[np.ndarray] = []
    names: list[str] = []
    sources: list[str] = []
    seen: set[str] = set()
    for name in sets:
        with _open_zip(folder / name) as zf:
            by_char: dict[str, list[str]] = {}
            for member in zf.namelist():
                parts = member.strip("/").split("/")
                if member.endswith(".png") and len(parts) >= 3:
                    by_char.setdefault(f"{parts[-3]}/{parts[-2]}", []).append(member)
            if not by_char:
                raise ValueError(f"{name} holds no images laid out as <alphabet>/<character>/*.png. {_HOW}")
            for char in sorted(by_char):
                if char in seen:  # Greek and Latin are in both small sets
                    continue
                files = sorted(by_char[char])
                images.append(np.stack([_read_image(zf.read(f), image_size) for f in files]))
                names.append(char)
                sources.append(name)
                seen.add(char)
    counts = {a.shape[0] for a in images}
    if len(counts) != 1:
        raise ValueError(f"characters have different numbers of drawings {sorted(counts)}; expected 20 each.")
    return OmniglotCharacters(torch.from_numpy(np.stack(images)), names, sources)


@dataclass(frozen=True)
class OneShotRun:
    """One official 20-way one-shot run: ``train`` ``(20, 1, S, S)`` (class i), ``test`` ``(20, 1, S, S)`` with
    ``test_labels[j]`` the class of test item j."""

    train: Tensor
    test: Tensor
    test_labels: Tensor


def load_omniglot_runs(root: PathArg = None, *, image_size: int = 28) -> list[OneShotRun]:
    """The 20 one-shot classification runs of Lake et al. (2015) from ``all_runs.zip``."""
    folder = _folder(root)
    runs = []
    with _open_zip(folder / "all_runs.zip") as zf:
        for r in range(1, 21):
            base = f"run{r:02d}"
            train = [_read_image(zf.read(f"{base}/training/class{c:02d}.png"), image_size) for c in range(1, 21)]
            labels = {}
            for line in zf.read(f"{base}/class_labels.txt").decode().split("\n"):
                parts = line.split()
                if len(parts) == 2:
                    item = int(parts[0].split("item")[1][:2])
                    labels[item] = int(parts[1].split("class")[1][:2]) - 1
            if sorted(labels) != list(range(1, 21)):
                raise ValueError(f"{base}/class_labels.txt does not list 20 test items. {_HOW}")
            test = [_read_image(zf.read(f"{base}/test/item{i:02d}.png"), image_size) for i in range(1, 21)]
            runs.append(OneShotRun(torch.from_numpy(np.stack(train)).unsqueeze(1),
                                   torch.from_numpy(np.stack(test)).unsqueeze(1),
                                   torch.tensor([labels[i] for i in range(1, 21)])))
    return runs
