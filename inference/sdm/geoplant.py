"""SDM training samples from a user's GeoPlant (GLC24 / GLC25) data directory.

The deep-SDM trainer consumes :class:`~inference.sdm.dataset.SDMData`; generated regions produce it
with ``region_samples``, and this module produces the same thing from the public GeoPlant release, so
that one trainer serves both: presence-absence surveys with their areas (``areaInM2``, used by the
calibration) and presence-only records grouped by 50 m cell as target-group background samples
(``po_cells`` / ``po_cell_samples``, as the generated path's ``po_samples``). Parsing is left to
:mod:`inference.data.readers`; this module only finds the files, loads them in parallel into
preallocated arrays, and splits by 10 km blocks.

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

and, optional, the presence-only (PO) part (the releases write ``PO`` or ``P0``; cube folders flat or
in ``{id[-2:]}/{id[-4:-2]}/`` trees, as GLC25 files them)::

    GLC24                                                    GLC25
    GLC24_PO_metadata_train.csv (Kaggle: GLC24_P0_...)       GLC25_P0_metadata_train.csv
    .../GLC24-PO-train-bioclimatic_monthly/                  BioclimTimeSeries/cubes/PO-train/{xx}/{yy}/
    .../GLC24-PO-train-landsat_time_series/                  SateliteTimeSeries-Landsat/cubes/PO-train/{xx}/{yy}/
    PO_Train_SatellitePatches_RGB/..., ..._NIR/...           SatelitePatches/PO-train/{xx}/{yy}/{id}.tiff
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
    read_geoplant_po,
    read_landsat_cube,
    read_s2_glc24,
    read_s2_glc25,
)
from inference.sdm.dataset import SDMData, concat, po_cell_samples, po_cells
from inference.splits import SPLIT_NAMES, assign_splits, spatial_blocks

log = logging.getLogger(__name__)

PathLike = str | os.PathLike
MODALITY_FILES = ("climate", "landsat", "s2")
_WHAT = {"climate": "climate cube", "landsat": "Landsat cube", "s2": "Sentinel-2 patch file"}

_CSV_RE = re.compile(r"(?i)^(glc\d\d[_-])?pa[_-]metadata[_-]train\.csv$")
_PO_CSV_RE = re.compile(r"(?i)^(glc\d\d[_-])?p[o0][_-]metadata[_-]train\.csv$")  # GLC24 / GLC25 write P0 too
_CUBE_RE = re.compile(r"(?i)^(?P<prefix>.*?)(?P<id>\d+)_cube\.pt$")
_KEYWORDS = {"climate": ("bioclim", "climat"), "landsat": ("landsat",)}
_DIGITS_RE = re.compile(r"^\d{1,2}$")
_MAX_DEPTH = 5
# Fallback file names (used only to name a missing cube when the folder holds none to copy from).
_DEFAULT_PREFIX = {"climate": "GLC24-PA-train-bioclimatic_monthly_",
                   "landsat": "GLC24-PA-train-landsat-time-series_"}
_PO_SEED = 0x504F  # the PO sample draw's own stream beside ``seed`` (max_surveys draws from ``seed``)
_MAX_LISTED = 100  # dropped presence-only samples listed in the summary (all are counted)


# --------------------------------------------------------------------------------------------
# Layout
# --------------------------------------------------------------------------------------------


def _tokens(text: str) -> set[str]:
    return set(re.split(r"[^a-z0-9]+", text.lower())) - {""}


def _train_part(rel: str) -> str | None:
    """"pa" or "po": the training part of a release a path belongs to (GLC folders also hold PA-test
    data); None for anything else."""
    t = _tokens(rel)
    if "train" not in t or "test" in t:
        return None
    po = bool(t & {"po", "p0"})
    if "pa" in t and not po:
        return "pa"
    if po and "pa" not in t:
        return "po"
    return None


def _field(part: str, name: str) -> str:
    return name if part == "pa" else f"po_{name}"


def _cube_kind(name: str) -> str | None:
    m = _CUBE_RE.match(name)
    if not m:
        return None
    prefix = m["prefix"].lower()
    for kind, words in _KEYWORDS.items():
        if any(w in prefix for w in words):
            return kind
    return None


def _tree_file(folder: Path) -> str | None:
    """Name of the first patch or cube under ``folder/{xx}/{yy}/`` (a GLC file tree), or None."""
    cur = folder
    for _ in range(3):
        try:
            entries = sorted(os.scandir(cur), key=lambda e: e.name)
        except OSError:
            return None
        for e in entries:
            if e.is_file() and (e.name.split(".")[0].isdigit() or _CUBE_RE.match(e.name)):
                return e.name
        sub = [e for e in entries if e.is_dir() and _DIGITS_RE.match(e.name)]
        if not sub:
            return None
        cur = Path(sub[0].path)
    return None


def _s2_source(rgb: Path | None, nir: Path | None, tiff: Path | None) -> str | None:
    if rgb is not None and nir is not None:
        return "glc24-jpeg"
    if tiff is not None:
        return "glc25-tiff"
    return None


@dataclass
class GeoPlantLayout:
    """Where the parts of a GeoPlant training set lie: the PA part, and the optional PO part.

    S2 comes either from GLC24 JPEG pairs (``s2_rgb_dir`` + ``s2_nir_dir``) or from GLC25 4-band
    GeoTIFFs (``s2_tiff_dir``); the JPEG pair is used when both are set. Patch folders are the roots of
    the ``{id[-2:]}/{id[-4:-2]}/{id}.ext`` trees; cube folders may hold their files at any depth. The
    ``po_*`` fields are the same for the presence-only records (``po_csv`` None: no PO part).
    """

    pa_csv: Path
    climate_dir: Path
    landsat_dir: Path
    s2_rgb_dir: Path | None = None
    s2_nir_dir: Path | None = None
    s2_tiff_dir: Path | None = None
    po_csv: Path | None = None
    po_climate_dir: Path | None = None
    po_landsat_dir: Path | None = None
    po_s2_rgb_dir: Path | None = None
    po_s2_nir_dir: Path | None = None
    po_s2_tiff_dir: Path | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if v is not None:
                setattr(self, f.name, Path(v))

    @property
    def s2_source(self) -> str | None:
        return _s2_source(self.s2_rgb_dir, self.s2_nir_dir, self.s2_tiff_dir)

    @property
    def po_s2_source(self) -> str | None:
        return _s2_source(self.po_s2_rgb_dir, self.po_s2_nir_dir, self.po_s2_tiff_dir)

    @classmethod
    def discover(cls, root: PathLike, *, po: bool = True, **overrides: PathLike | None) -> GeoPlantLayout:
        """Find the standard GLC24 / GLC25 names under ``root`` (up to 5 folder levels deep).

        ``overrides`` (any field name) replace what would be searched for and must exist. Folders
        are recognised by their content (cube file names, patch trees), restricted to the PA and PO
        *train* parts, so renamed parent folders still work. The PO part is optional: without a PO
        CSV every ``po_*`` field is None; with one, its cubes and patches must be found too.
        ``po=False`` leaves the PO part out (``po_*`` None). Raises FileNotFoundError listing every
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
                elif _PO_CSV_RE.match(fn):
                    found["po_csv"].append(here / fn)
            for fn in filenames:  # cube folders: classified by their first cube file
                kind = _cube_kind(fn)
                part = kind and _train_part(f"{rel}/{fn}")
                if part:
                    found[_field(part, f"{kind}_dir")].append(here)
                    break
            name = _tree_file(here) if rel != "." and has_digit_dirs else None
            if name and _cube_kind(name):  # cubes in {xx}/{yy}/ sub-folders (GLC25 PO)
                part = _train_part(f"{rel}/{name}")
                if part:
                    found[_field(part, f"{_cube_kind(name)}_dir")].append(here)
            elif name and _train_part(rel):
                part = _train_part(rel)
                ext = name.rsplit(".", 1)[-1].lower()
                last = _tokens(here.name)
                if ext in ("tif", "tiff"):
                    found[_field(part, "s2_tiff_dir")].append(here)
                elif ext in ("jpeg", "jpg"):
                    band = "nir" if "nir" in last else "rgb" if "rgb" in last else None
                    if band is None:  # e.g. PA_Train_SatellitePatches_NIR/<anything>
                        band = "nir" if "nir" in _tokens(rel) else "rgb" if "rgb" in _tokens(rel) else None
                    if band:
                        found[_field(part, f"s2_{band}_dir")].append(here)

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
            "po_climate_dir": "a PO-train folder of *bioclimatic_monthly_{surveyId}_cube.pt files, flat or in "
                              "{id[-2:]}/{id[-4:-2]}/ sub-folders (GLC24: GLC24-PO-train-bioclimatic_monthly, GLC25: "
                              "BioclimTimeSeries/cubes/PO-train)",
            "po_landsat_dir": "a PO-train folder of *landsat*_{surveyId}_cube.pt files, flat or in "
                              "{id[-2:]}/{id[-4:-2]}/ sub-folders (GLC24: GLC24-PO-train-landsat_time_series, GLC25: "
                              "SateliteTimeSeries-Landsat/cubes/PO-train)",
            "po_s2": "Sentinel-2 patch trees of the PO records: GLC24 JPEG pairs PO_Train_SatellitePatches_RGB + "
                     "PO_Train_SatellitePatches_NIR (po_s2_rgb_dir=, po_s2_nir_dir=), or GLC25 GeoTIFFs "
                     "SatelitePatches/PO-train (po_s2_tiff_dir=)",
        }
        s2_keys = ("s2_rgb_dir", "s2_nir_dir", "s2_tiff_dir")
        po_s2_keys = tuple(f"po_{k}" for k in s2_keys)
        s2_given = bool(set(s2_keys) & set(given))  # the user chose the S2 source: no search results mix in
        po_s2_given = bool(set(po_s2_keys) & set(given))
        chosen: dict[str, Path | None] = {}
        ambiguous = []
        for k in sorted(names):
            if k.startswith("po_") and not po:
                chosen[k] = None
            elif k in given:
                chosen[k] = given[k]
            elif (s2_given and k in s2_keys) or (po_s2_given and k in po_s2_keys):
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
        for pre in ("", "po_"):
            if chosen[f"{pre}s2_rgb_dir"] is None or chosen[f"{pre}s2_nir_dir"] is None:
                chosen[f"{pre}s2_rgb_dir"] = chosen[f"{pre}s2_nir_dir"] = None
        missing = [f"{k}: looked for {looked_for[k]} (or pass {k}=...)"
                   for k in ("pa_csv", "climate_dir", "landsat_dir") if chosen[k] is None]
        has_jpeg = chosen["s2_rgb_dir"] is not None and chosen["s2_nir_dir"] is not None
        if not has_jpeg and chosen["s2_tiff_dir"] is None:
            missing.append(f"Sentinel-2: looked for {looked_for['s2']}")
        if chosen["po_csv"] is None:  # no presence-only part: nothing to use its inputs for
            po_inputs = [k for k in names if k.startswith("po_") and chosen[k] is not None]
            if po and po_inputs:
                log.warning("GeoPlant data under %s: presence-only inputs (%s) but no PO CSV; looked for "
                            "[GLCxx_]PO_metadata_train.csv (or P0; pass po_csv=...)", root, ", ".join(sorted(po_inputs)))
            for k in po_inputs:
                chosen[k] = None
        else:
            po_missing = [f"{k}: looked for {looked_for[k]} (or pass {k}=...)"
                          for k in ("po_climate_dir", "po_landsat_dir") if chosen[k] is None]
            if _s2_source(chosen["po_s2_rgb_dir"], chosen["po_s2_nir_dir"], chosen["po_s2_tiff_dir"]) is None:
                po_missing.append(f"presence-only Sentinel-2: looked for {looked_for['po_s2']}")
            if po_missing:
                missing += [f"{m} [for the presence-only records of {chosen['po_csv']}; po=False / --no-po leaves "
                            "them out]" for m in po_missing]
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

    The ``po_*`` fields describe the presence-only part (``po_csv`` None: none was read): records and
    50 m cells in the file, the cells drawn (``po_limit``), the samples read (one per cell, with the
    inputs of its first record in file order that has all its files) and the records they hold;
    ``po_dropped`` counts drawn cells none of whose records has all its files, ``po_missing_files``
    the records checked that miss each modality and ``po_missing`` lists the first dropped cells
    (survey id of their first record -> its missing files).
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
    species_without_presence: int = 0  # species never present in the samples read
    records_outside_species: int = 0  # (survey, species) records of species not in species_ids
    n_blocks: int = 0
    samples_per_split: dict[str, int] = field(default_factory=dict)  # PA and PO samples
    surveys_per_split: dict[str, int] = field(default_factory=dict)  # PA surveys only
    po_csv: str | None = None
    po_s2_source: str | None = None
    po_records_in_file: int = 0
    po_cells_in_file: int = 0
    po_cells_selected: int = 0  # after po_limit
    po_samples: int = 0
    po_records_read: int = 0  # records in the samples read
    po_dropped: int = 0
    po_missing_files: dict[str, int] = field(default_factory=dict)
    po_missing: dict[int, tuple[str, ...]] = field(default_factory=dict)
    po_records_outside_species: int = 0
    species_only_in_po: int = 0  # species present in PO samples and in no PA survey read

    def __str__(self) -> str:
        drop = ", ".join(f"{k} {v}" for k, v in self.dropped.items() if v) or "none"
        split = ", ".join(f"{k} {v}" for k, v in self.samples_per_split.items())
        po = ""
        if self.po_csv is not None:
            po = (f"; presence-only {self.po_csv}: {self.po_samples} samples (50 m cells) holding "
                  f"{self.po_records_read} records, from {self.po_cells_selected} of {self.po_cells_in_file} "
                  f"cells ({self.po_records_in_file} records in file); dropped {self.po_dropped} cells")
        return (f"GeoPlant {self.pa_csv}: {self.surveys_read} of {self.surveys_selected} surveys read "
                f"({self.surveys_in_file} in file); dropped {self.n_dropped} (missing: {drop}){po}; "
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


class _Cubes:
    """The cubes of one modality in one folder: survey id -> existing path, or the expected one.

    A folder whose cubes lie in ``{id[-2:]}/{id[-4:-2]}/`` sub-folders (GLC25 PO: millions of files)
    is not listed: each path is built from the first file's prefix and checked. Other folders are
    walked once (:func:`_index_cubes`).
    """

    def __init__(self, folder: Path, kind: str):
        self.folder = Path(folder)
        with os.scandir(self.folder) as entries:
            tree = any(e.is_dir() and _DIGITS_RE.match(e.name) for e in entries)
        first = _tree_file(self.folder) if tree else None
        m = _CUBE_RE.match(first) if first else None
        if m and _cube_kind(first) == kind:
            self.index, self.prefix, self.dups = None, m["prefix"], 0
        else:
            self.index, self.prefix, self.dups = _index_cubes(self.folder, kind)

    def expected(self, sid: int) -> str:
        if self.index is None:
            s = str(sid)
            return os.path.join(str(self.folder), s[-2:], s[-4:-2], f"{self.prefix}{sid}_cube.pt")
        return str(self.folder / f"{self.prefix}{sid}_cube.pt")

    def path(self, sid: int) -> str | None:
        if self.index is None:
            p = self.expected(sid)
            return p if os.path.isfile(p) else None
        return self.index.get(sid)


def _fit_patch(a: np.ndarray, size: int) -> np.ndarray:
    """Centre crop to ``size`` (the trainer crops the same way), or resize up when smaller."""
    h, w = a.shape[-2:]
    if h >= size and w >= size:
        top, left = (h - size) // 2, (w - size) // 2
        return a[:, top:top + size, left:left + size]

    return np.stack([np.asarray(Image.fromarray(b).resize((size, size), Image.BILINEAR)) for b in a])


class _S2:
    """Per-record S2 path and reading for one source (JPEG pair or GeoTIFF), to GLC24 uint8."""

    def __init__(self, rgb: Path | None, nir: Path | None, tiff: Path | None, what: str = ""):
        self.source = _s2_source(rgb, nir, tiff)
        if self.source is None:
            raise ValueError(f"the layout has no {what}Sentinel-2 source: set {what and 'po_'}s2_rgb_dir and "
                             f"{what and 'po_'}s2_nir_dir (GLC24 JPEGs) or {what and 'po_'}s2_tiff_dir (GLC25 "
                             "GeoTIFFs); the deep-SDM needs the S2 patch")
        self.rgb, self.nir, self.tiff = rgb, nir, tiff

    def paths(self, sid: int) -> list[str]:
        if self.source == "glc24-jpeg":
            return [str(glc24_patch_path(self.rgb, sid)), str(glc24_patch_path(self.nir, sid))]
        return [str(glc24_patch_path(self.tiff, sid, ext="tiff"))]

    def read(self, sid: int) -> np.ndarray:
        if self.source == "glc24-jpeg":
            return read_s2_glc24(self.rgb, sid, rgb_dir=self.rgb, nir_dir=self.nir, size=None)
        arr, _ = read_s2_glc25(self.paths(sid)[0])
        return glc25_to_glc24_uint8(arr)


@dataclass
class _Inputs:
    """Where the inputs of one part (PA or PO) lie."""

    cubes: dict[str, _Cubes]
    s2: _S2

    def missing(self, sid: int) -> list[tuple[str, str]]:
        """(modality, path) of each file of record ``sid`` that does not exist."""
        miss = [(kind, self.cubes[kind].expected(sid)) for kind in ("climate", "landsat")
                if self.cubes[kind].path(sid) is None]
        return miss + [("s2", p) for p in self.s2.paths(sid) if not os.path.isfile(p)]

    def check(self, sids: np.ndarray, workers: int) -> dict[int, list[tuple[str, str]]]:
        """Position in ``sids`` -> missing files, for the records missing any; I/O bound, threaded."""
        def one(chunk: range) -> list[tuple[int, list[tuple[str, str]]]]:
            return [(j, m) for j in chunk if (m := self.missing(int(sids[j])))]

        out: dict[int, list[tuple[str, str]]] = {}
        with ThreadPoolExecutor(workers) as ex:
            for res in ex.map(one, _chunks(len(sids), 256)):
                out.update(res)
        return out

    def load(self, inputs: dict[str, np.ndarray], offset: int, sids: np.ndarray, size: int, workers: int,
             progress: bool, desc: str, first: tuple[int, np.ndarray] | None = None) -> None:
        """Read the inputs of ``sids`` into rows ``offset...`` of the preallocated ``inputs``."""
        def load(chunk: range) -> int:
            for k in chunk:
                sid = int(sids[k])
                inputs["climate"][offset + k] = read_climate_cube(self.cubes["climate"].path(sid), fill_nan=0.0).numpy()
                inputs["landsat"][offset + k] = read_landsat_cube(self.cubes["landsat"].path(sid), fill_nan=0.0).numpy()
                patch = first[1] if first is not None and sid == first[0] else self.s2.read(sid)
                inputs["s2"][offset + k] = _fit_patch(patch, size)
            return len(chunk)

        with ThreadPoolExecutor(workers) as ex, tqdm(total=len(sids), desc=desc, unit="sample",
                                                     disable=not progress) as bar:
            for done in ex.map(load, _chunks(len(sids), 32)):
                bar.update(done)


def _inputs(climate_dir: Path, landsat_dir: Path, s2: _S2) -> _Inputs:
    cubes = {}
    for kind, folder in (("climate", climate_dir), ("landsat", landsat_dir)):
        cubes[kind] = _Cubes(folder, kind)
        if cubes[kind].dups:
            log.warning("%s: %d survey ids have several %s cubes; using the first in sorted order", folder,
                        cubes[kind].dups, kind)
    return _Inputs(cubes, s2)


def _chunks(n: int, size: int) -> list[range]:
    return [range(i, min(i + size, n)) for i in range(0, n, size)]


@dataclass
class _POPart:
    """The presence-only samples chosen and their records."""

    sids: np.ndarray  # [P] survey id whose inputs each sample gets
    cx: np.ndarray  # [P] cell centre, EPSG:3035
    cy: np.ndarray
    cell: np.ndarray  # [R] sample of each record read
    species: np.ndarray  # [R] species of each record read
    inputs: _Inputs
    counts: dict


def _po_part(layout: GeoPlantLayout, seed: int, po_limit: int | None, on_missing: str, workers: int) -> _POPart:
    """Read the PO CSV, group its records by 50 m cell (``po_cells``, as the generated path does),
    draw at most ``po_limit`` cells (``seed``) and give each the inputs of its first record (file
    order) that has all its files; cells where none has are dropped (or, ``on_missing="error"``, the
    first record missing a file raises)."""
    s2 = _S2(layout.po_s2_rgb_dir, layout.po_s2_nir_dir, layout.po_s2_tiff_dir, what="presence-only ")
    inputs = _inputs(layout.po_climate_dir, layout.po_landsat_dir, s2)
    po = read_geoplant_po(layout.po_csv)
    counts = {"po_csv": str(layout.po_csv), "po_s2_source": s2.source, "po_records_in_file": len(po)}
    if not len(po):
        log.warning("%s lists no presence-only record", layout.po_csv)
        e = np.zeros(0, np.int64)
        return _POPart(e, np.zeros(0), np.zeros(0), e, e, inputs, counts)
    cx, cy, cell_of = po_cells(po.lon, po.lat)
    n_cells = len(cx)
    chosen = np.arange(n_cells)
    if po_limit is not None and po_limit < n_cells:
        chosen = np.sort(np.random.default_rng([seed, _PO_SEED]).choice(n_cells, size=po_limit, replace=False))
    pos = np.full(n_cells, -1, np.int64)
    pos[chosen] = np.arange(len(chosen))
    rec = np.flatnonzero(pos[cell_of] >= 0)  # records of the chosen cells, file order
    rc = pos[cell_of[rec]]
    order = np.argsort(rc, kind="stable")
    by_cell, rc_sorted = rec[order], rc[order]
    start = np.searchsorted(rc_sorted, np.arange(len(chosen)))
    end = np.append(start[1:], len(by_cell))

    # Each cell's candidates in file order, one round per candidate rank (most cells: one round).
    rep = np.full(len(chosen), -1, np.int64)
    ptr = start.copy()
    pending = np.arange(len(chosen))
    first_miss: dict[int, tuple[int, list[tuple[str, str]]]] = {}
    by_kind: Counter = Counter()
    while pending.size:
        cand = by_cell[ptr[pending]]
        miss = inputs.check(po.survey_ids[cand], workers)
        if miss and on_missing == "error":
            j = min(miss, key=lambda j: cand[j])
            kind, path = miss[j][0]
            raise DataFormatError(
                path, f"the {_WHAT[kind]} of presence-only record {int(po.survey_ids[cand[j]])} ({layout.po_csv} "
                      f"line {int(po.lines[cand[j]])}): no such file (on_missing='drop' skips such records)")
        ok = np.ones(len(cand), bool)
        for j, m in miss.items():
            ok[j] = False
            by_kind.update({k for k, _ in m})
            first_miss.setdefault(int(pending[j]), (int(cand[j]), m))
        rep[pending[ok]] = cand[ok]
        ptr[pending] += 1
        pending = pending[~ok & (ptr[pending] < end[pending])]
    kept = np.flatnonzero(rep >= 0)
    dropped = [c for c in sorted(first_miss) if rep[c] < 0]
    if len(kept) == 0 and len(chosen):
        r, m = first_miss[dropped[0]]
        raise ValueError(f"{layout.po_csv}: none of {len(chosen)} presence-only samples (50 m cells) has a record "
                         f"with all its files (e.g. record {int(po.survey_ids[r])}, line {int(po.lines[r])}, misses "
                         f"{m[0][1]}); po=False / --no-po trains on the presence-absence surveys only")
    new = np.full(len(chosen), -1, np.int64)
    new[kept] = np.arange(len(kept))
    read = new[rc] >= 0
    counts.update(
        po_cells_in_file=n_cells, po_cells_selected=len(chosen), po_samples=len(kept),
        po_records_read=int(read.sum()), po_dropped=len(dropped),
        po_missing_files={k: by_kind.get(k, 0) for k in MODALITY_FILES},
        po_missing={int(po.survey_ids[first_miss[c][0]]): tuple(p for _, p in first_miss[c][1])
                    for c in dropped[:_MAX_LISTED]},
    )
    return _POPart(sids=po.survey_ids[rep[kept]], cx=cx[chosen[kept]], cy=cy[chosen[kept]], cell=new[rc[read]],
                   species=po.species_ids[rec[read]], inputs=inputs, counts=counts)


def geoplant_samples(
    layout: GeoPlantLayout | PathLike,
    *,
    species_ids: np.ndarray | list[int] | None = None,
    seed: int = 0,
    s2_size: int | None = None,
    max_surveys: int | None = None,
    use_po: bool = False,
    po_limit: int | None = None,
    on_missing: str = "drop",
    progress: bool = True,
    workers: int | None = None,
) -> SDMData:
    """GeoPlant presence-absence surveys and presence-only records as :class:`SDMData` for the deep-SDM trainer.

    ``layout`` is a :class:`GeoPlantLayout` or a root folder (passed to ``discover``). Labels are
    over ``species_ids`` (default: every species id of the PA file and of the PO records read,
    sorted; records of other species are ignored); a species not listed for a survey is a true
    absence. Positions are lon/lat projected to EPSG:3035. Inputs: climate and Landsat cubes (NaN -> 0
    as the reference loaders do) and the S2 patch in the GLC24 uint8 convention (GLC25 reflectance
    converted), centre-cropped to ``s2_size`` (or resized up when the patch is smaller; default: the
    first patch's size). Surveys keep their ``areaInM2`` (``data.area``; NaN for PO samples), which the
    calibration uses. ``max_surveys`` keeps a ``seed``-random subset (in file order) before loading.

    With ``use_po`` (off by default here, so that callers wanting surveys only read no PO file; the
    ``train sdm`` command turns it on) and a PO part in the layout, the presence-only records are
    grouped by 50 m cell as the generated path does (:func:`~inference.sdm.dataset.po_cells`): one
    sample per cell, flagged ``is_po`` (its unrecorded species are the trainer's down-weighted
    target-group pseudo-absences), placed at the cell centre, with the inputs of the cell's first
    record (file order) that has all its files. ``po_limit`` keeps a ``seed``-random subset of at most that many
    cells (every record of a kept cell counts). Without a PO CSV only the surveys are read.

    Records missing a file are dropped (``on_missing="drop"``) or raise :class:`DataFormatError`
    naming the record and the file (``"error"``); malformed files always raise. Blocks are 10 km over
    every sample, split by ``seed``. The returned data carries ``data.summary``
    (:class:`GeoPlantSummary`), also logged at INFO.
    """
    if on_missing not in ("drop", "error"):
        raise ValueError(f"on_missing must be 'drop' or 'error', got {on_missing!r}")
    if po_limit is not None and po_limit < 0:
        raise ValueError(f"po_limit must be >= 0, got {po_limit}")
    if not isinstance(layout, GeoPlantLayout):
        layout = GeoPlantLayout.discover(layout, po=use_po)
    s2 = _S2(layout.s2_rgb_dir, layout.s2_nir_dir, layout.s2_tiff_dir)
    pa = read_geoplant_pa(layout.pa_csv)

    n_file = len(pa)
    rows = np.arange(n_file)
    if max_surveys is not None and max_surveys < n_file:
        rows = np.sort(np.random.default_rng(seed).choice(n_file, size=max_surveys, replace=False))
    sids = pa.survey_ids[rows]
    n_workers = workers or min(32, 2 * (os.cpu_count() or 4))
    pa_inputs = _inputs(layout.climate_dir, layout.landsat_dir, s2)

    # Pass 1: which files exist (cubes from the index, S2 by its fixed path).
    missing = pa_inputs.check(sids, n_workers)
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
    po = _po_part(layout, seed, po_limit, on_missing, n_workers) if use_po and layout.po_csv is not None else None
    n_po = 0 if po is None else len(po.sids)

    if species_ids is None:
        species_ids = np.unique(pa.species_ids) if po is None else np.union1d(pa.species_ids, po.species)
    species_ids = np.asarray(species_ids, dtype=np.int64).ravel()
    if len(np.unique(species_ids)) != len(species_ids):
        raise ValueError("species_ids must be unique")
    if len(species_ids) == 0:
        raise ValueError(f"{layout.pa_csv}: no species to learn (the file lists no speciesId)")

    # Pass 2: read into preallocated arrays, one row per kept survey, then one per PO sample.
    first_sid = int(sids[kept[0]])
    first = s2.read(first_sid)
    size = int(s2_size or first.shape[-1])
    if size > min(first.shape[-2:]):
        log.warning("S2 patches of %s px are resized up to %d px: each pixel then covers less ground "
                    "than the model's 10 m convention", first.shape[-1], size)
    total = n + n_po
    inputs = {
        "s2": np.empty((total, 4, size, size), np.uint8),
        "climate": np.empty((total, 4, 19, 12), np.float32),
        "landsat": np.empty((total, 6, 4, 21), np.float32),
    }
    pa_inputs.load(inputs, 0, sids[kept], size, n_workers, progress, "GeoPlant surveys", (first_sid, first))
    if n_po:
        po.inputs.load(inputs, n, po.sids, size, n_workers, progress, "GeoPlant presence-only")

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
    data = SDMData(x=x, y=y, labels=labels, is_po=np.zeros(n, bool), species_ids=species_ids,
                   area=np.asarray(pa.area_m2[sel], np.float64))
    if n_po:
        data = concat([data, po_cell_samples(po.cx, po.cy, po.cell, po.species, species_ids)])
    data.inputs = inputs
    data.block = spatial_blocks(data.x, data.y)
    data.split = assign_splits(data.block, seed)

    by_kind = Counter(kind for miss in missing.values() for kind in {k for k, _ in miss})
    pa_present = labels.any(0)
    po_counts = {}
    if po is not None:
        po_counts = dict(po.counts, po_records_outside_species=int((~np.isin(po.species, species_ids)).sum()),
                         species_only_in_po=int((data.labels[n:].any(0) & ~pa_present).sum()))
    split = data.split
    data.summary = GeoPlantSummary(
        pa_csv=str(layout.pa_csv), s2_source=s2.source, s2_size=size,
        surveys_in_file=n_file, surveys_selected=len(sids), surveys_read=n, n_dropped=len(missing),
        dropped={k: by_kind.get(k, 0) for k in MODALITY_FILES},
        missing={int(sids[j]): tuple(p for _, p in miss) for j, miss in sorted(missing.items())},
        duplicate_files={k: c.dups for k, c in pa_inputs.cubes.items()}, n_species=len(species_ids),
        species_without_presence=int((~data.labels.any(0)).sum()),
        records_outside_species=int((~hit).sum()), n_blocks=len(np.unique(data.block)),
        samples_per_split={name: int((split == s).sum()) for s, name in SPLIT_NAMES.items()},
        surveys_per_split={name: int((split[:n] == s).sum()) for s, name in SPLIT_NAMES.items()},
        **po_counts,
    )
    log.info("%s", data.summary)
    return data
