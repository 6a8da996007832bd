"""SDM training samples from a user's GeoPlant (GLC24 / GLC25) presence-absence data directory.

The deep-SDM trainer consumes :class:`~inference.sdm.dataset.SDMData`; generated regions produce it
with ``region_samples``, and this module produces the same thing from the public GeoPlant release, so
that one trainer serves both. Parsing is left to :mod:`inference.data.readers`; this module only
finds the files, loads them in parallel into preallocated arrays, and splits by 10 km blocks.

Layouts found by :meth:`GeoPlantLayout.discover` (every path can be overridden)::

    GLC24                                                    GLC25
    GLC24_PA_metadata_train.csv                              GLC25_PA_metadata_train.csv
    TimeSeries-Cubes/TimeSeries-Cubes/                       BioclimTimeSeries/cubes/PA-train/
      GLC24-PA-train-bioclimatic_monthly/                      GLC25-PA-train-bioclimatic_monthly_{id}_cube.pt
        GLC24-PA-train-bioclimatic_monthly_{id}_cube.pt      SateliteTimeSeries-Landsat/cubes/PA-train/
      GLC24-PA-train-landsat_time_series/                      GLC25-PA-train-landsat-time-series_{id}_cube.pt
        GLC24-PA-train-landsat-time-series_{id}_cube.pt      SatelitePatches/PA-train/{id[-2:]}/{id[-4:-2]}/{id}.tiff
    PA_Train_SatellitePatches_RGB/pa_train_patches_rgb/{id[-2:]}/{id[-4:-2]}/{id}.jpeg
    PA_Train_SatellitePatches_NIR/pa_train_patches_nir/{id[-2:]}/{id[-4:-2]}/{id}.jpeg
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
from PIL import Image
from pyproj import Transformer
from tqdm import tqdm

from inference.data.readers import (
    DataFormatError,
    glc24_patch_path,
    glc25_to_glc24_uint8,
    read_climate_cube,
    read_geoplant_pa,
    read_landsat_cube,
    read_s2_glc24,
    read_s2_glc25,
)
from inference.sdm.dataset import SDMData
from inference.splits import SPLIT_NAMES, assign_splits, spatial_blocks

log = logging.getLogger(__name__)

PathLike = str | os.PathLike
MODALITY_FILES = ("climate", "landsat", "s2")
_WHAT = {"climate": "climate cube", "landsat": "Landsat cube", "s2": "Sentinel-2 patch file"}

_CSV_RE = re.compile(r"(?i)^(glc\d\d[_-])?pa[_-]metadata[_-]train\.csv$")
_CUBE_RE = re.compile(r"(?i)^(?P<prefix>.*?)(?P<id>\d+)_cube\.pt$")
_KEYWORDS = {"climate": ("bioclim", "climat"), "landsat": ("landsat",)}
_DIGITS_RE = re.compile(r"^\d{1,2}$")
_MAX_DEPTH = 5
# Fallback file names (used only to name a missing cube when the folder holds none to copy from).
_DEFAULT_PREFIX = {"climate": "GLC24-PA-train-bioclimatic_monthly_",
                   "landsat": "GLC24-PA-train-landsat-time-series_"}


# --------------------------------------------------------------------------------------------
# Layout
# --------------------------------------------------------------------------------------------


def _tokens(text: str) -> set[str]:
    return set(re.split(r"[^a-z0-9]+", text.lower())) - {""}


def _is_pa_train(rel: str) -> bool:
    """The PA training part of a release (GLC folders also hold PA-test and PO-train data)."""
    t = _tokens(rel)
    return "pa" in t and "train" in t and not t & {"test", "po"}


def _cube_kind(name: str) -> str | None:
    m = _CUBE_RE.match(name)
    if not m:
        return None
    prefix = m["prefix"].lower()
    for kind, words in _KEYWORDS.items():
        if any(w in prefix for w in words):
            return kind
    return None


def _patch_ext(folder: Path) -> str | None:
    """Extension of the first patch under ``folder/{xx}/{yy}/`` (GLC patch tree), or None."""
    cur = folder
    for _ in range(3):
        try:
            entries = sorted(os.scandir(cur), key=lambda e: e.name)
        except OSError:
            return None
        for e in entries:
            if e.is_file() and e.name.split(".")[0].isdigit():
                return e.name.rsplit(".", 1)[-1].lower()
        sub = [e for e in entries if e.is_dir() and _DIGITS_RE.match(e.name)]
        if not sub:
            return None
        cur = Path(sub[0].path)
    return None


@dataclass
class GeoPlantLayout:
    """Where the parts of a GeoPlant PA training set lie.

    S2 comes either from GLC24 JPEG pairs (``s2_rgb_dir`` + ``s2_nir_dir``) or from GLC25 4-band
    GeoTIFFs (``s2_tiff_dir``); the JPEG pair is used when both are set. Patch folders are the roots of
    the ``{id[-2:]}/{id[-4:-2]}/{id}.ext`` trees; cube folders may hold their files at any depth.
    """

    pa_csv: Path
    climate_dir: Path
    landsat_dir: Path
    s2_rgb_dir: Path | None = None
    s2_nir_dir: Path | None = None
    s2_tiff_dir: Path | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if v is not None:
                setattr(self, f.name, Path(v))

    @property
    def s2_source(self) -> str | None:
        if self.s2_rgb_dir is not None and self.s2_nir_dir is not None:
            return "glc24-jpeg"
        if self.s2_tiff_dir is not None:
            return "glc25-tiff"
        return None

    @classmethod
    def discover(cls, root: PathLike, **overrides: PathLike | None) -> GeoPlantLayout:
        """Find the standard GLC24 / GLC25 names under ``root`` (up to 5 folder levels deep).

        ``overrides`` (any field name) replace what would be searched for and must exist. Folders
        are recognised by their content (cube file names, patch trees), restricted to the PA
        *train* part, so renamed parent folders still work. Raises FileNotFoundError listing every
        part not found and what was looked for, or ValueError when a part is ambiguous.
        """
        root = Path(root)
        names = {f.name for f in fields(cls)}
        unknown = set(overrides) - names
        if unknown:
            raise TypeError(f"unknown GeoPlantLayout field(s): {', '.join(sorted(unknown))}")
        given = {k: Path(v) for k, v in overrides.items() if v is not None}
        for k, p in given.items():
            if not p.exists():
                raise FileNotFoundError(f"{k}={p}: no such file or folder")
        if not root.is_dir():
            raise FileNotFoundError(f"GeoPlant data folder {root} does not exist")

        found: dict[str, list[Path]] = {k: [] for k in names}
        for dirpath, dirnames, filenames in os.walk(root):
            here = Path(dirpath)
            rel = here.relative_to(root).as_posix()
            depth = 0 if rel == "." else rel.count("/") + 1
            has_digit_dirs = any(_DIGITS_RE.match(d) for d in dirnames)
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and not _DIGITS_RE.match(d))
            if depth >= _MAX_DEPTH:
                dirnames[:] = []
            for fn in filenames:
                if _CSV_RE.match(fn):
                    found["pa_csv"].append(here / fn)
            kinds = set()
            for fn in filenames:  # cube folders: classified by their first cube file
                kind = _cube_kind(fn)
                if kind and _is_pa_train(f"{rel}/{fn}"):
                    kinds.add(kind)
                    break
            for kind in kinds:
                found[f"{kind}_dir"].append(here)
            if rel != "." and has_digit_dirs and _is_pa_train(rel):
                ext = _patch_ext(here)
                last = _tokens(here.name)
                if ext in ("tif", "tiff"):
                    found["s2_tiff_dir"].append(here)
                elif ext in ("jpeg", "jpg"):
                    band = "nir" if "nir" in last else "rgb" if "rgb" in last else None
                    if band is None:  # e.g. PA_Train_SatellitePatches_NIR/<anything>
                        band = "nir" if "nir" in _tokens(rel) else "rgb" if "rgb" in _tokens(rel) else None
                    if band:
                        found[f"s2_{band}_dir"].append(here)

        looked_for = {
            "pa_csv": "GLC24_PA_metadata_train.csv / GLC25_PA_metadata_train.csv (any [GLCxx_]PA_metadata_train.csv)",
            "climate_dir": "a PA-train folder of *bioclimatic_monthly_{surveyId}_cube.pt files (GLC24: "
                           "TimeSeries-Cubes/TimeSeries-Cubes/GLC24-PA-train-bioclimatic_monthly, GLC25: "
                           "BioclimTimeSeries/cubes/PA-train)",
            "landsat_dir": "a PA-train folder of *landsat-time-series_{surveyId}_cube.pt files (GLC24: "
                           "TimeSeries-Cubes/TimeSeries-Cubes/GLC24-PA-train-landsat_time_series, GLC25: "
                           "SateliteTimeSeries-Landsat/cubes/PA-train)",
            "s2": "Sentinel-2 patch trees {id[-2:]}/{id[-4:-2]}/{id}.ext: GLC24 JPEG pairs "
                  "PA_Train_SatellitePatches_RGB/pa_train_patches_rgb + PA_Train_SatellitePatches_NIR/"
                  "pa_train_patches_nir (s2_rgb_dir=, s2_nir_dir=), or GLC25 GeoTIFFs SatelitePatches/PA-train "
                  "(s2_tiff_dir=)",
        }
        s2_keys = ("s2_rgb_dir", "s2_nir_dir", "s2_tiff_dir")
        s2_given = bool(set(s2_keys) & set(given))  # the user chose the S2 source: no search results mix in
        chosen: dict[str, Path | None] = {}
        ambiguous = []
        for k in sorted(names):
            if k in given:
                chosen[k] = given[k]
            elif s2_given and k in s2_keys:
                chosen[k] = None
            elif len(found[k]) == 1:
                chosen[k] = found[k][0]
            elif len(found[k]) > 1:
                ambiguous.append(f"{k}: {', '.join(str(p) for p in found[k])} (pass {k}=...)")
                chosen[k] = None
            else:
                chosen[k] = None
        if ambiguous:
            raise ValueError(f"GeoPlant data under {root}: several candidates for\n  " + "\n  ".join(ambiguous))
        # A lone JPEG folder is unusable; keep the pair or nothing.
        if chosen["s2_rgb_dir"] is None or chosen["s2_nir_dir"] is None:
            chosen["s2_rgb_dir"] = chosen["s2_nir_dir"] = None
        missing = [f"{k}: looked for {looked_for[k]} (or pass {k}=...)"
                   for k in ("pa_csv", "climate_dir", "landsat_dir") if chosen[k] is None]
        has_jpeg = chosen["s2_rgb_dir"] is not None and chosen["s2_nir_dir"] is not None
        if not has_jpeg and chosen["s2_tiff_dir"] is None:
            missing.append(f"Sentinel-2: looked for {looked_for['s2']}")
        if missing:
            raise FileNotFoundError(
                f"GeoPlant data under {root} is incomplete (searched {_MAX_DEPTH} folder levels):\n  "
                + "\n  ".join(missing))
        return cls(**chosen)


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


@dataclass
class GeoPlantSummary:
    """What :func:`geoplant_samples` read and left out (also at ``data.summary``).

    ``dropped`` counts surveys missing each modality's file (a survey missing two files counts
    under both); ``n_dropped`` counts surveys; ``missing`` maps each dropped survey id to its
    missing files. ``duplicate_files`` counts survey ids with several cube files of one modality
    (the first path in sorted order is used).
    """

    pa_csv: str
    s2_source: str
    s2_size: int
    surveys_in_file: int = 0
    surveys_selected: int = 0  # after max_surveys
    surveys_read: int = 0
    n_dropped: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    missing: dict[int, tuple[str, ...]] = field(default_factory=dict)
    duplicate_files: dict[str, int] = field(default_factory=dict)
    n_species: int = 0
    species_without_presence: int = 0  # species never present in the surveys read
    records_outside_species: int = 0  # (survey, species) records of species not in species_ids
    n_blocks: int = 0
    samples_per_split: dict[str, int] = field(default_factory=dict)

    def __str__(self) -> str:
        drop = ", ".join(f"{k} {v}" for k, v in self.dropped.items() if v) or "none"
        split = ", ".join(f"{k} {v}" for k, v in self.samples_per_split.items())
        return (f"GeoPlant {self.pa_csv}: {self.surveys_read} of {self.surveys_selected} surveys read "
                f"({self.surveys_in_file} in file); dropped {self.n_dropped} (missing: {drop}); "
                f"{self.n_species} species ({self.species_without_presence} never present); "
                f"S2 {self.s2_source} {self.s2_size}px; {self.n_blocks} blocks; {split}")


def _index_cubes(folder: Path, kind: str) -> tuple[dict[int, str], str, int]:
    """survey id -> cube path, walking ``folder`` once (cube folders nest differently per release).

    Files naming the other modality are skipped so that one folder may hold both. Returns the
    index, the most common file-name prefix (to name missing files) and the duplicate count.
    """
    other = [w for k, ws in _KEYWORDS.items() if k != kind for w in ws]
    index: dict[int, str] = {}
    prefixes: Counter = Counter()
    dups = 0
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for fn in sorted(filenames):
            m = _CUBE_RE.match(fn)
            if not m or any(w in m["prefix"].lower() for w in other):
                continue
            sid = int(m["id"])
            if sid in index:
                dups += 1
                continue
            index[sid] = os.path.join(dirpath, fn)
            prefixes[m["prefix"]] += 1
    prefix = prefixes.most_common(1)[0][0] if prefixes else _DEFAULT_PREFIX[kind]
    return index, prefix, dups


def _fit_patch(a: np.ndarray, size: int) -> np.ndarray:
    """Centre crop to ``size`` (the trainer crops the same way), or resize up when smaller."""
    h, w = a.shape[-2:]
    if h >= size and w >= size:
        top, left = (h - size) // 2, (w - size) // 2
        return a[:, top:top + size, left:left + size]

    return np.stack([np.asarray(Image.fromarray(b).resize((size, size), Image.BILINEAR)) for b in a])


class _S2:
    """Per-survey S2 path and reading for one source (JPEG pair or GeoTIFF), to GLC24 uint8."""

    def __init__(self, layout: GeoPlantLayout):
        self.source = layout.s2_source
        if self.source is None:
            raise ValueError("the layout has no Sentinel-2 source: set s2_rgb_dir and s2_nir_dir (GLC24 "
                             "JPEGs) or s2_tiff_dir (GLC25 GeoTIFFs); the deep-SDM needs the S2 patch")
        self.layout = layout

    def paths(self, sid: int) -> list[str]:
        if self.source == "glc24-jpeg":
            return [str(glc24_patch_path(self.layout.s2_rgb_dir, sid)),
                    str(glc24_patch_path(self.layout.s2_nir_dir, sid))]
        return [str(glc24_patch_path(self.layout.s2_tiff_dir, sid, ext="tiff"))]

    def read(self, sid: int) -> np.ndarray:
        if self.source == "glc24-jpeg":
            rgb = self.layout.s2_rgb_dir
            return read_s2_glc24(rgb, sid, rgb_dir=rgb, nir_dir=self.layout.s2_nir_dir, size=None)
        arr, _ = read_s2_glc25(self.paths(sid)[0])
        return glc25_to_glc24_uint8(arr)


def _chunks(n: int, size: int) -> list[range]:
    return [range(i, min(i + size, n)) for i in range(0, n, size)]


def geoplant_samples(
    layout: GeoPlantLayout | PathLike,
    *,
    species_ids: np.ndarray | list[int] | None = None,
    seed: int = 0,
    s2_size: int | None = None,
    max_surveys: int | None = None,
    on_missing: str = "drop",
    progress: bool = True,
    workers: int | None = None,
) -> SDMData:
    """GeoPlant presence-absence surveys as :class:`SDMData` for the deep-SDM trainer.

    ``layout`` is a :class:`GeoPlantLayout` or a root folder (passed to ``discover``). Labels are
    over ``species_ids`` (default: every species id in the file, sorted; records of other species
    are ignored); a species not listed for a survey is a true absence. Positions are lon/lat
    projected to EPSG:3035. Inputs: climate and Landsat cubes (NaN -> 0 as the reference loaders
    do) and the S2 patch in the GLC24 uint8 convention (GLC25 reflectance converted), centre-cropped
    to ``s2_size`` (or resized up when the patch is smaller; default: the first patch's size).
    ``max_surveys`` keeps a ``seed``-random subset (in file order) before loading. Surveys missing a
    file are dropped (``on_missing="drop"``) or raise :class:`DataFormatError` naming the survey and
    the file (``"error"``); malformed files always raise. Blocks are 10 km, split by ``seed``.

    The returned data carries ``data.summary`` (:class:`GeoPlantSummary`), also logged at INFO.
    """
    if on_missing not in ("drop", "error"):
        raise ValueError(f"on_missing must be 'drop' or 'error', got {on_missing!r}")
    if not isinstance(layout, GeoPlantLayout):
        layout = GeoPlantLayout.discover(layout)
    s2 = _S2(layout)
    pa = read_geoplant_pa(layout.pa_csv)
    if species_ids is None:
        species_ids = np.unique(pa.species_ids)
    species_ids = np.asarray(species_ids, dtype=np.int64).ravel()
    if len(np.unique(species_ids)) != len(species_ids):
        raise ValueError("species_ids must be unique")
    if len(species_ids) == 0:
        raise ValueError(f"{layout.pa_csv}: no species to learn (the file lists no speciesId)")

    n_file = len(pa)
    rows = np.arange(n_file)
    if max_surveys is not None and max_surveys < n_file:
        rows = np.sort(np.random.default_rng(seed).choice(n_file, size=max_surveys, replace=False))
    sids = pa.survey_ids[rows]

    cubes = {}
    dup_counts = {}
    for kind, folder in (("climate", layout.climate_dir), ("landsat", layout.landsat_dir)):
        index, prefix, dups = _index_cubes(folder, kind)
        cubes[kind] = (index, prefix, folder)
        dup_counts[kind] = dups
        if dups:
            log.warning("%s: %d survey ids have several %s cubes; using the first in sorted order", folder, dups, kind)

    # Pass 1: which files exist (cubes from the index, S2 by its fixed path); I/O bound, threaded.
    n_workers = workers or min(32, 2 * (os.cpu_count() or 4))
    missing: dict[int, list[tuple[str, str]]] = {}

    def check(chunk: range) -> list[tuple[int, list[tuple[str, str]]]]:
        out = []
        for j in chunk:
            sid = int(sids[j])
            miss = []
            for kind in ("climate", "landsat"):
                index, prefix, folder = cubes[kind]
                if sid not in index:
                    miss.append((kind, str(Path(folder) / f"{prefix}{sid}_cube.pt")))
            for p in s2.paths(sid):
                if not os.path.isfile(p):
                    miss.append(("s2", p))
            if miss:
                out.append((j, miss))
        return out

    chunks = _chunks(len(sids), 256)
    with ThreadPoolExecutor(n_workers) as ex:
        for res in ex.map(check, chunks):
            for j, miss in res:
                missing[j] = miss
    if missing and on_missing == "error":
        j = min(missing)
        kind, path = missing[j][0]
        raise DataFormatError(
            path, f"the {_WHAT[kind]} of survey {int(sids[j])} (listed in {layout.pa_csv}): no such file "
                  f"({len(missing)} surveys miss files; on_missing='drop' skips them)")
    keep = np.array([j not in missing for j in range(len(sids))], bool)
    kept = np.flatnonzero(keep)
    if len(kept) == 0:
        raise ValueError(f"{layout.pa_csv}: none of {len(sids)} surveys has all its files "
                         f"(e.g. survey {int(sids[min(missing)])} misses {missing[min(missing)][0][1]})")
    n = len(kept)

    # Pass 2: read into preallocated arrays, one row per kept survey.
    first = s2.read(int(sids[kept[0]]))
    size = int(s2_size or first.shape[-1])
    if size > min(first.shape[-2:]):
        log.warning("S2 patches of %s px are resized up to %d px: each pixel then covers less ground "
                    "than the model's 10 m convention", first.shape[-1], size)
    inputs = {
        "s2": np.empty((n, 4, size, size), np.uint8),
        "climate": np.empty((n, 4, 19, 12), np.float32),
        "landsat": np.empty((n, 6, 4, 21), np.float32),
    }

    def load(chunk: range) -> int:
        for k in chunk:
            sid = int(sids[kept[k]])
            inputs["climate"][k] = read_climate_cube(cubes["climate"][0][sid], fill_nan=0.0).numpy()
            inputs["landsat"][k] = read_landsat_cube(cubes["landsat"][0][sid], fill_nan=0.0).numpy()
            inputs["s2"][k] = _fit_patch(first if k == 0 else s2.read(sid), size)
        return len(chunk)

    with ThreadPoolExecutor(n_workers) as ex, tqdm(total=n, desc="GeoPlant surveys", unit="survey",
                                                   disable=not progress) as bar:
        for done in ex.map(load, _chunks(n, 32)):
            bar.update(done)

    # Positions, labels, blocks, splits.
    sel = rows[kept]
    to_3035 = Transformer.from_crs("EPSG:4326", "EPSG:3035", always_xy=True)
    x, y = to_3035.transform(pa.lon[sel], pa.lat[sel])
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    counts = pa.n_species_records[sel]
    starts = pa.species_indptr[sel]
    rec = np.concatenate([pa.species_ids[s:s + c] for s, c in zip(starts, counts)]) if n else np.zeros(0, np.int64)
    rec_row = np.repeat(np.arange(n), counts)
    order = np.argsort(species_ids)
    pos = np.searchsorted(species_ids[order], rec)
    pos_c = np.minimum(pos, len(species_ids) - 1)
    hit = species_ids[order][pos_c] == rec
    labels = np.zeros((n, len(species_ids)), bool)
    labels[rec_row[hit], order[pos_c[hit]]] = True
    block = spatial_blocks(x, y)
    split = assign_splits(block, seed)

    data = SDMData(x=x, y=y, labels=labels, is_po=np.zeros(n, bool), species_ids=species_ids,
                   block=block, split=split, inputs=inputs, p_true=None)
    by_kind = Counter(kind for miss in missing.values() for kind in {k for k, _ in miss})
    data.summary = GeoPlantSummary(
        pa_csv=str(layout.pa_csv), s2_source=s2.source, s2_size=size,
        surveys_in_file=n_file, surveys_selected=len(sids), surveys_read=n, n_dropped=len(missing),
        dropped={k: by_kind.get(k, 0) for k in MODALITY_FILES},
        missing={int(sids[j]): tuple(p for _, p in miss) for j, miss in sorted(missing.items())},
        duplicate_files=dup_counts, n_species=len(species_ids),
        species_without_presence=int((~labels.any(0)).sum()),
        records_outside_species=int((~hit).sum()), n_blocks=len(np.unique(block)),
        samples_per_split={name: int((split == s).sum()) for s, name in SPLIT_NAMES.items()},
    )
    log.info("%s", data.summary)
    return data
