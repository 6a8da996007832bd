"""PlantTraitNet training data: photos, species-level trait labels, cached encoder features.

* :func:`load_photos` reads a PlantTraitNet CSV (``Image, Longitude, Latitude, PFT,
  {trait}_{median,sd,lowerbound,upperbound}``), checks that every image exists, turns each row's
  species-level trait distribution into lognormal parameters (:func:`lognormal_params`) and, on
  generated regions, attaches ``photos_truth.csv`` (is_plant, blur, the individual's true traits).
* :func:`sample_labels` draws one label per photo and trait from those lognormals (every epoch).
* :func:`stratified_batches` builds batches with the plant-functional-type mix of the data set.
* :func:`photo_features` runs the frozen encoders once per photo and caches the result on disk.
* :func:`block_folds` / :func:`block_split`: spatial hold-out by blocks of ``block_m`` metres.
"""

from __future__ import annotations

import csv
import hashlib
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from pyproj import Transformer

from inference.checkpoint import save_torch
from inference.data.readers import read_planttraitnet_csv
from inference.splits import spatial_blocks

from .model import TRAITS, FrozenEncoders

_TO_3035 = Transformer.from_crs("EPSG:4326", "EPSG:3035", always_xy=True)
Z975 = 1.96  # the bounds of the generator / TRY summaries: exp(mu -/+ 1.96 sd), the 2.5 and 97.5 % quantiles


def lognormal_params(median, sd, lower, upper, z: float = Z975) -> tuple[np.ndarray, np.ndarray]:
    """Log-mean and log-sd of each species-level trait distribution (arrays of any equal shape).

    * log-mean: ``log(median)``; without a median, the mid-point of the log bounds.
    * log-sd: from the arithmetic sd of a lognormal with that median,
      ``sd^2 = m^2 u (u - 1)`` with ``u = exp(s^2)``, so ``s^2 = log((1 + sqrt(1 + 4 (sd/m)^2)) / 2)``;
      without an sd, from the bounds read as the 2.5 / 97.5 % quantiles, ``(log ub - log lb) / (2 z)``;
      without either, 0 (the label is the median itself).

    NaN log-mean: no usable label for that trait (masked out of the loss).
    """
    m, s, lo, hi = (np.asarray(a, np.float64) for a in (median, sd, lower, upper))
    with np.errstate(divide="ignore", invalid="ignore"):
        mu = np.where(m > 0, np.log(m), np.nan)
        bounds_ok = (lo > 0) & (hi >= lo)
        mu = np.where(np.isnan(mu) & bounds_ok, 0.5 * (np.log(lo) + np.log(hi)), mu)
        k2 = (s / m) ** 2
        sig_sd = np.sqrt(np.log((1 + np.sqrt(1 + 4 * k2)) / 2))
        sig_b = (np.log(hi) - np.log(lo)) / (2 * z)
    sig = np.where((m > 0) & np.isfinite(s) & (s >= 0), sig_sd, np.where(bounds_ok, sig_b, 0.0))
    sig = np.where(np.isfinite(mu), np.nan_to_num(sig), np.nan)
    return mu, sig


@dataclass
class PhotoSet:
    """Photos with their position, plant functional type and species-level log-trait distributions."""

    root: Path                 # folder the image paths are relative to
    image: np.ndarray          # str [N]
    lon: np.ndarray            # float64 [N]
    lat: np.ndarray
    x: np.ndarray              # EPSG:3035 metres
    y: np.ndarray
    pft: np.ndarray            # str [N]
    log_median: np.ndarray     # float64 [N, T]: label log-mean (NaN: no label)
    log_sd: np.ndarray         # float64 [N, T]
    traits: tuple[str, ...] = TRAITS
    month: np.ndarray | None = None           # float [N], 1-12 (NaN / None: unknown)
    truth: dict[str, np.ndarray] | None = field(default=None)  # generated regions only

    def __len__(self) -> int:
        return len(self.image)

    def subset(self, idx) -> PhotoSet:
        idx = np.asarray(idx)
        return replace(self, image=self.image[idx], lon=self.lon[idx], lat=self.lat[idx], x=self.x[idx],
                       y=self.y[idx], pft=self.pft[idx], log_median=self.log_median[idx], log_sd=self.log_sd[idx],
                       month=None if self.month is None else self.month[idx],
                       truth=None if self.truth is None else {k: v[idx] for k, v in self.truth.items()})

    def paths(self) -> list[Path]:
        return [self.root / p for p in self.image]


def _read_truth(path: Path, images: np.ndarray, traits: tuple[str, ...]) -> dict[str, np.ndarray]:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = {r["Image"]: r for r in csv.DictReader(fh)}
    missing = [im for im in images if im not in rows]
    if missing:
        raise ValueError(f"{path}: no truth row for {len(missing)} photo(s), e.g. {missing[0]!r}")
    sel = [rows[im] for im in images]
    return {
        "is_plant": np.array([r["is_plant"] in ("1", "True", "true") for r in sel], bool),
        "blur": np.array([float(r["blur"]) for r in sel]),
        "species_id": np.array([int(r["speciesId"]) for r in sel], np.int64),
        "log_traits": np.log(np.array([[float(r[t]) for t in traits] for r in sel], np.float64)),
    }


def load_photos(csv_path, image_root=None, truth_csv="auto", traits: tuple[str, ...] = TRAITS) -> PhotoSet:
    """Read a PlantTraitNet CSV and check its images.

    Raises :class:`inference.data.readers.DataFormatError` for a CSV that is not in the format
    (missing column, bad number: the message names the file, line and field) and
    ``FileNotFoundError`` when the CSV or any image is missing (the message counts them and names
    the first). ``truth_csv="auto"`` reads ``photos_truth.csv`` beside the CSV when present.
    """
    csv_path = Path(csv_path)
    table = read_planttraitnet_csv(csv_path, traits=traits)
    if len(table) == 0:
        raise ValueError(f"{csv_path}: no photos")
    root = Path(image_root) if image_root is not None else csv_path.parent
    missing = [p for p in table.image if not (root / p).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of {len(table)} images listed in {csv_path} are missing under {root}, "
            f"e.g. {missing[0]!r}")
    mu, sig = lognormal_params(table.median, table.sd, table.lowerbound, table.upperbound)
    x, y = _TO_3035.transform(table.longitude, table.latitude)
    truth = None
    if truth_csv == "auto":
        truth_csv = csv_path.parent / "photos_truth.csv"
        truth_csv = truth_csv if truth_csv.is_file() else None
    if truth_csv is not None:
        truth = _read_truth(Path(truth_csv), table.image, tuple(traits))
    return PhotoSet(root=root, image=table.image, lon=table.longitude, lat=table.latitude, x=np.asarray(x),
                    y=np.asarray(y), pft=table.pft, log_median=mu, log_sd=sig, traits=tuple(traits), truth=truth)


def load_images(paths, size: int | None = None) -> np.ndarray:
    """uint8 RGB [N, H, W, 3]; every photo resized to ``size`` (default: the first photo's size)."""
    out = []
    shape = None if size is None else (size, size)
    for p in paths:
        try:
            with Image.open(p) as im:
                im = im.convert("RGB")
                if shape is None:
                    shape = (im.height, im.width)
                if (im.height, im.width) != shape:
                    im = im.resize((shape[1], shape[0]), Image.BILINEAR)
                out.append(np.asarray(im, np.uint8))
        except FileNotFoundError:
            raise FileNotFoundError(f"image file not found: {p}") from None
        except (UnidentifiedImageError, OSError) as exc:
            raise ValueError(f"cannot read image {p}: {exc}") from None
    if not out:
        return np.zeros((0, 1, 1, 3), np.uint8)
    return np.stack(out)


def sample_labels(rng: np.random.Generator, log_median: np.ndarray, log_sd: np.ndarray) -> np.ndarray:
    """One draw per photo and trait from its species' lognormal, on the log scale (NaN stays NaN)."""
    return log_median + log_sd * rng.standard_normal(log_median.shape)


def stratified_batches(rng: np.random.Generator, groups: np.ndarray, batch_size: int,
                       min_size: int = 2) -> list[np.ndarray]:
    """Shuffled batches of positions 0..N-1 that each hold every group (PFT) in its overall share.

    Each group is shuffled and dealt into the same number of batches (``ceil(N / batch_size)``), so
    a batch of 64 from a set of 60 % herbs, 15 % trees... holds about 38 herbs, 10 trees... Batches
    smaller than ``min_size`` (BatchNorm needs two samples) are dropped.
    """
    groups = np.asarray(groups)
    n = len(groups)
    if n == 0:
        return []
    n_batches = max(1, int(np.ceil(n / batch_size)))
    pieces: list[list[np.ndarray]] = [[] for _ in range(n_batches)]
    for g in np.unique(groups):
        members = rng.permutation(np.flatnonzero(groups == g))
        chunks = np.array_split(members, n_batches)
        for b, k in enumerate(rng.permutation(n_batches)):
            pieces[b].append(chunks[k])
    batches = [rng.permutation(np.concatenate(p)) for p in pieces]
    return [b for b in batches if len(b) >= min_size]


def block_folds(x: np.ndarray, y: np.ndarray, k: int, seed: int = 0, block_m: float = 10_000) -> np.ndarray:
    """Fold id [N] in 0..k-1: whole spatial blocks per fold, folds of about equal photo counts."""
    block = spatial_blocks(x, y, block_m)
    uniq, counts = np.unique(block, return_counts=True)
    if len(uniq) < k:
        raise ValueError(f"only {len(uniq)} spatial blocks of {block_m / 1000:g} km: too few for {k} folds")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(uniq))
    order = order[np.argsort(-counts[order], kind="stable")]  # largest first, ties in random order
    load = np.zeros(k, np.int64)
    fold_of = np.zeros(len(uniq), np.int64)
    for i in order:
        f = int(np.argmin(load))
        fold_of[i] = f
        load[f] += counts[i]
    return fold_of[np.searchsorted(uniq, block)]


def block_split(x: np.ndarray, y: np.ndarray, fraction: float, seed: int = 0,
                block_m: float = 5_000) -> np.ndarray:
    """Bool [N]: True for the photos in a random ``fraction`` of the spatial blocks (at least one
    block, never all)."""
    block = spatial_blocks(x, y, block_m)
    uniq = np.unique(block)
    if len(uniq) < 2:
        raise ValueError("the photos fall into one spatial block: too few for a hold-out split")
    rng = np.random.default_rng(seed)
    n = min(len(uniq) - 1, max(1, int(round(fraction * len(uniq)))))
    chosen = rng.choice(uniq, n, replace=False)
    return np.isin(block, chosen)


def _files_key(paths: list[Path]) -> str:
    h = hashlib.sha1()
    for p in paths:
        st = os.stat(p)
        h.update(f"{p}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def photo_features(encoders: FrozenEncoders, photos: PhotoSet, cache_dir: Path | None = None,
                   batch_size: int = 64, log=None) -> dict[str, torch.Tensor]:
    """Frozen-encoder features of every photo, computed once and cached under ``cache_dir``.

    The cache file name joins a hash of the encoder weights with a hash of the image files (path,
    size, modification time), so a changed photo or encoder never reuses stale features.
    """
    paths = photos.paths()
    path = None
    if cache_dir is not None:
        key = f"{encoders.fingerprint()}-{_files_key(paths)}"
        path = Path(cache_dir) / f"features-{key}.pt"
        if path.is_file():
            try:
                feats = torch.load(path, map_location="cpu", weights_only=True)
                if all(len(v) == len(photos) for v in feats.values()):
                    return feats
            except Exception:  # noqa: BLE001 - a damaged cache is recomputed
                pass
    feats: dict[str, list[torch.Tensor]] = {}
    chunk = 1024
    for i in range(0, len(paths), chunk):
        imgs = load_images(paths[i:i + chunk])
        for k, v in encoders.encode(imgs, batch_size).items():
            feats.setdefault(k, []).append(v)
        if log is not None:
            log(f"  encoded {min(i + chunk, len(paths))}/{len(paths)} photos")
    out = {k: torch.cat(v) for k, v in feats.items()}
    if path is not None:
        save_torch(path, out)
    return out
