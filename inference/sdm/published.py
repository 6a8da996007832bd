"""Published GeoPlant baseline weights -> a GeoFlora SDM checkpoint (``geoflora models import-geoplant``).

The GeoPlant baselines (github.com/plantnet/GeoPlant, ``baselines/MME/*.ipynb``) train one
``ResNet6`` per modality and a multimodal ensemble ``MultiModalEnsembleC`` over them, and save
plain ``state_dict``\\ s with ``torch.save(model.state_dict(), path)``. Their ``ResNet6`` is the
architecture of :class:`~inference.sdm.model.ResNet6Encoder`: conv3x3 + BN + ReLU twice, max-pool
2, twice more, max-pool 2, global average pool; the ensemble concatenates the pooled features into
one linear layer over all species. This module maps those weights onto
:class:`~inference.sdm.model.MultimodalSDM` and writes them with :func:`~inference.sdm.model.save_sdm`.

Layouts read (``.pth`` / ``.pt``; a ``module.`` prefix, DataParallel's, is dropped, and a dict
holding the weights under ``state_dict`` / ``model_state_dict`` / ``model`` is unwrapped):

* ``ensemble`` -- ``MultiModalEnsembleC`` (``MME-3M(Bioclim+Landsat+Sentinel2).ipynb``,
  ``MME-2M(Bioclim+Landsat).ipynb``): ``landsat_model.*``, ``bioclim_model.*``,
  ``sentinel_model.*`` (each a ``ResNet6`` whose ``fc`` is ``nn.Identity``, so without ``fc``
  keys), ``fc1.weight`` [S, 512 x modalities], ``fc1.bias`` [S]. The forward concatenates
  landsat, bioclim, sentinel (the modalities present, in that order).
* ``single`` -- one ``ResNet6`` (``Sentinel2-resnet6.ipynb``, ``Bioclim-resnet6.ipynb``,
  ``Landsat-resnet6.ipynb``): ``conv1.*`` ... ``bn4.*``, ``fc.weight`` [S, 512], ``fc.bias``;
  its modality must be given (a 4-channel first layer is Sentinel-2 or climate).

Key mapping (``{p}`` = ``landsat_model.`` / ``bioclim_model.`` / ``sentinel_model.`` in the
ensemble, empty in a single model; ``{m}`` = ``landsat`` / ``climate`` / ``s2``):

============================================  ==============================================
published                                     GeoFlora ``MultimodalSDM``
============================================  ==============================================
``{p}conv1.weight``                           ``encoders.{m}.stage1.0.weight``
``{p}bn1.{weight,bias,running_mean,...}``     ``encoders.{m}.stage1.1.*``
``{p}conv2.weight`` / ``{p}bn2.*``            ``encoders.{m}.stage1.3.weight`` / ``stage1.4.*``
``{p}conv3.weight`` / ``{p}bn3.*``            ``encoders.{m}.stage2.0.weight`` / ``stage2.1.*``
``{p}conv4.weight`` / ``{p}bn4.*``            ``encoders.{m}.stage2.3.weight`` / ``stage2.4.*``
``{p}convK.bias``                             folded into BN: ``running_mean -= bias``
``fc1.weight`` (``fc.weight``)                ``head.weight``, column blocks reordered from
                                              landsat | bioclim | sentinel to s2 | climate | landsat
``fc1.bias`` (``fc.bias``)                    ``head.bias``
============================================  ==============================================

The published convolutions have a bias and GeoFlora's do not: each is followed by a BatchNorm, so
``BN(conv(x) + b)`` equals ``BN'(conv(x))`` with ``running_mean' = running_mean - b`` (exactly, in
eval mode; in training mode the batch mean absorbs ``b`` anyway).

Pooling: the notebooks pool with ``F.max_pool2d(x, 2)`` (floor), GeoFlora's encoder with
``ceil_mode=True``. On the 128 px Sentinel-2 patch both give the same result; on the climate cube
(19 x 12) and the Landsat cube (4 x 21) ceil pooling keeps an extra row / column, so those encoders'
outputs differ from the published model's unless :class:`~inference.sdm.model.SDMConfig` has a
``pool_ceil_mode`` field (then it is set to False). Every import measures this: the report's
``check`` compares the published forward (:func:`reference_logits`) with the imported model on
random inputs of the configured shapes.

Species: output ``i`` is species ``species_ids[i]``. The notebooks index their outputs by
``speciesId`` itself (``label[speciesId] = 1`` with ``NUM_CLASSES = 11255``): that is the species
index ``"identity"``. Otherwise the index is a file listing ``speciesId`` in output order
(:func:`read_species_index`).

Normalisation: the notebooks feed the Landsat and climate cubes raw (``torch.nan_to_num``, as
GeoFlora's readers with ``fill_nan=0``) and the Sentinel-2 patch (R, G, B from the RGB JPEG, then
NIR: GeoFlora's order) through ``ToTensor()`` and ``Normalize(0.5, 0.5)``, i.e.
``(x - 127.5) / 127.5`` on the GLC24 uint8 values: :func:`notebook_normalizer`, the default.

Thresholds: the conformal threshold (``conformal``, what ``geoflora compute`` turns
probabilities into assemblages with) needs presence-absence data the model was not trained on.
With ``calibrate_with`` (a GeoPlant folder, read by :func:`inference.sdm.geoplant.geoplant_samples`)
it is computed as ``geoflora train sdm`` computes it (:mod:`inference.sdm.conformal` on the
calibration blocks, metrics on the test blocks); without it only ``f1_optimal: 0.5`` is stored and
``geoflora compute`` cannot use the checkpoint until it is imported again with calibration data.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from backend.core.errors import CheckpointError
from inference.sdm import conformal
from inference.sdm.calibration import fit_calibration
from inference.sdm.geoplant import GeoPlantLayout, geoplant_samples
from inference.sdm.metrics import evaluate
from inference.sdm.model import PAPER, MultimodalSDM, SDMConfig, save_sdm
from inference.sdm.preprocess import MODALITIES, Normalizer
from inference.sdm.train import predict, predict_logits
from inference.splits import CAL, TEST

#: published sub-model prefix -> GeoFlora modality, in the order the ensemble concatenates them
PUBLISHED_PREFIXES: dict[str, str] = {"landsat_model.": "landsat", "bioclim_model.": "climate",
                                      "sentinel_model.": "s2"}
#: published ResNet6 layer -> GeoFlora (stage, conv index, BN index)
_LAYERS = {1: ("stage1", 0, 1), 2: ("stage1", 3, 4), 3: ("stage2", 0, 1), 4: ("stage2", 3, 4)}
_BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
#: input channels GeoFlora feeds each modality (R, G, B, NIR; 4 climate variables; 6 Landsat bands)
_CHANNELS = {"s2": 4, "climate": PAPER["climate_shape"][0], "landsat": PAPER["landsat_shape"][0]}
_MODALITY_NAMES = {"s2": "Sentinel-2", "climate": "climate (bioclim)", "landsat": "Landsat"}
#: the SDMConfig field that would let GeoFlora pool as the notebooks do (floor), when it exists
FLOOR_POOL_FIELD = "pool_ceil_mode"
FLOOR_POOLING_SUPPORTED = FLOOR_POOL_FIELD in {f.name for f in fields(SDMConfig)}
NOTEBOOK_S2_MEAN = NOTEBOOK_S2_STD = 127.5  # ToTensor() (/255) then Normalize(0.5, 0.5)


# ---------------------------------------------------------------------------------------------
# reading the published files

def load_published_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The plain state dict in ``path`` (``torch.load(weights_only=True)``), unwrapped from a
    ``state_dict`` / ``model_state_dict`` / ``model`` entry and without a ``module.`` prefix."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no published state dict at {path}")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same error to the user
        raise CheckpointError(f"{path} is not a plain PyTorch state dict ({type(exc).__name__}: {exc}); "
                              "the GeoPlant notebooks save torch.save(model.state_dict(), path)") from exc
    return unwrap_state_dict(sd, str(path))


def unwrap_state_dict(sd, what: str = "state dict") -> dict[str, torch.Tensor]:
    """``sd`` as ``{key: tensor}``: a wrapping dict and DataParallel's ``module.`` prefix removed."""
    for _ in range(2):
        if isinstance(sd, Mapping) and not any(isinstance(v, torch.Tensor) for v in sd.values()):
            inner = next((sd[k] for k in ("state_dict", "model_state_dict", "model") if isinstance(sd.get(k), Mapping)),
                         None)
            if inner is None:
                break
            sd = inner
    if not isinstance(sd, Mapping) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"{what} holds no state dict of tensors (got {type(sd).__name__})")
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return dict(sd)


def detect_layout(sd: Mapping[str, torch.Tensor], modality: str | None = None) -> tuple[str, tuple[str, ...]]:
    """``("ensemble", modalities)`` or ``("single", (modality,))`` (module docstring), the
    ensemble's modalities in the order its forward concatenates them."""
    present = tuple(m for p, m in PUBLISHED_PREFIXES.items() if any(k.startswith(p) for k in sd))
    if present or "fc1.weight" in sd:
        if not present:
            raise CheckpointError("the state dict has fc1 but no landsat_model. / bioclim_model. / sentinel_model. "
                                  "encoder: not a GeoPlant multimodal ensemble")
        if modality is not None:
            raise CheckpointError("modality= is for a single-modality ResNet6; this is an ensemble over "
                                  f"{', '.join(present)}")
        return "ensemble", present
    if "conv1.weight" in sd or "fc.weight" in sd:
        if modality not in MODALITIES:
            raise CheckpointError("a single-modality ResNet6 (conv1 ... bn4, fc): give its modality "
                                  f"(one of {', '.join(MODALITIES)}); a 4-channel conv1 may be Sentinel-2 or climate")
        return "single", (modality,)
    raise CheckpointError("not a GeoPlant baseline state dict: expected the ensemble's landsat_model.* / "
                          "bioclim_model.* / sentinel_model.* / fc1.* keys or a ResNet6's conv1 ... bn4, fc keys; "
                          f"found {_few(sorted(sd))}")


def _few(keys: Sequence[str], limit: int = 12) -> str:
    return ", ".join(keys[:limit]) + (f" ... ({len(keys)} in all)" if len(keys) > limit else "") if keys else "none"


def _expected_shapes(layout: str, modalities: Sequence[str], sd: Mapping[str, torch.Tensor]) -> dict[str, tuple]:
    """Every key the layout must hold, with its shape (widths read from the conv weights)."""
    out: dict[str, tuple] = {}
    feat = 0
    for m in modalities:
        p = _prefix(layout, m)
        cin = _CHANNELS[m]
        for i in range(1, 5):
            w = sd.get(f"{p}conv{i}.weight")
            cout = int(w.shape[0]) if w is not None and w.ndim == 4 else None
            out[f"{p}conv{i}.weight"] = (cout, cin, 3, 3)
            out[f"{p}conv{i}.bias"] = (cout,)
            for k in _BN_KEYS:
                out[f"{p}bn{i}.{k}"] = () if k == "num_batches_tracked" else (cout,)
            cin = cout
        feat = None if cin is None or feat is None else feat + cin
    head = "fc1" if layout == "ensemble" else "fc"
    w = sd.get(f"{head}.weight")
    n = int(w.shape[0]) if w is not None and w.ndim == 2 else None
    out[f"{head}.weight"] = (n, feat)
    out[f"{head}.bias"] = (n,)
    return out


def _prefix(layout: str, modality: str) -> str:
    if layout == "single":
        return ""
    return next(p for p, m in PUBLISHED_PREFIXES.items() if m == modality)


def check_state_dict(sd: Mapping[str, torch.Tensor], layout: str, modalities: Sequence[str]) -> None:
    """Raise :class:`CheckpointError` listing the missing and unexpected keys and the wrong shapes."""
    expected = _expected_shapes(layout, modalities, sd)
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    wrong = []
    for k, shape in expected.items():
        if k in sd and (sd[k].ndim != len(shape) or any(s is not None and s != g for s, g in zip(shape, sd[k].shape))):
            want = "x".join("?" if s is None else str(s) for s in shape) or "scalar"
            wrong.append(f"{k}: {tuple(sd[k].shape)}, expected {want}")
    widths = {tuple(int(sd[f"{_prefix(layout, m)}conv{i}.weight"].shape[0]) for i in range(1, 5))
              for m in modalities if all(f"{_prefix(layout, m)}conv{i}.weight" in sd for i in range(1, 5))}
    if len(widths) > 1:
        wrong.append(f"the encoders differ in width ({', '.join(map(str, sorted(widths)))}); GeoFlora's share one")
    if missing or unexpected or wrong:
        what = "GeoPlant multimodal ensemble" if layout == "ensemble" else f"GeoPlant ResNet6 ({modalities[0]})"
        parts = [f"the state dict does not fit a {what} ({', '.join(modalities)}; input channels "
                 + ", ".join(f"{_MODALITY_NAMES[m]} {_CHANNELS[m]}" for m in modalities) + ")"]
        if missing:
            parts.append(f"missing keys: {_few(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_few(unexpected)}")
        if wrong:
            parts.append("wrong shapes: " + "; ".join(wrong[:12]))
        raise CheckpointError("\n  ".join(parts))


# ---------------------------------------------------------------------------------------------
# the published forward (the check) and the mapping

def _published_encoder(sd: Mapping[str, torch.Tensor], p: str, x: torch.Tensor) -> torch.Tensor:
    """The notebooks' ``ResNet6.forward`` up to its ``fc`` (eval mode)."""
    for i in range(1, 5):
        x = F.conv2d(x, sd[f"{p}conv{i}.weight"], sd[f"{p}conv{i}.bias"], padding=1)
        x = F.batch_norm(x, sd[f"{p}bn{i}.running_mean"], sd[f"{p}bn{i}.running_var"], sd[f"{p}bn{i}.weight"],
                         sd[f"{p}bn{i}.bias"], training=False, eps=1e-5)
        x = F.relu(x)
        if i in (2, 4):
            x = F.max_pool2d(x, 2)
    return F.avg_pool2d(x, x.size()[2:]).flatten(1)


@torch.no_grad()
def reference_logits(sd: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor],
                     modality: str | None = None) -> torch.Tensor:
    """The published model's logits on ``batch`` ({modality: normalised tensor}), computed from its
    state dict as the notebook's forward computes them."""
    sd = {k: v.float() for k, v in unwrap_state_dict(sd).items()}
    layout, mods = detect_layout(sd, modality)
    feats = torch.cat([_published_encoder(sd, _prefix(layout, m), batch[m].float()) for m in mods], 1)
    head = "fc1" if layout == "ensemble" else "fc"
    return F.linear(feats, sd[f"{head}.weight"], sd[f"{head}.bias"])


def map_state_dict(sd: Mapping[str, torch.Tensor], layout: str, modalities: Sequence[str],
                   rows: np.ndarray | None = None) -> tuple[SDMConfig, dict[str, torch.Tensor]]:
    """The :class:`SDMConfig` (paper input shapes) and the ``MultimodalSDM`` state dict of the
    published weights (the module docstring's table); ``rows`` selects head rows (species)."""
    geo_order = [m for m in MODALITIES if m in modalities]
    p0 = _prefix(layout, modalities[0])
    widths = tuple(int(sd[f"{p0}conv{i}.weight"].shape[0]) for i in range(1, 5))
    out: dict[str, torch.Tensor] = {}
    for m in modalities:
        p = _prefix(layout, m)
        for i, (stage, ci, bi) in _LAYERS.items():
            base = f"encoders.{m}.{stage}"
            out[f"{base}.{ci}.weight"] = sd[f"{p}conv{i}.weight"].float().clone()
            for k in _BN_KEYS:
                out[f"{base}.{bi}.{k}"] = sd[f"{p}bn{i}.{k}"].clone()
            out[f"{base}.{bi}.running_mean"] = (sd[f"{p}bn{i}.running_mean"].float()
                                                - sd[f"{p}conv{i}.bias"].float())
    head = "fc1" if layout == "ensemble" else "fc"
    w, b = sd[f"{head}.weight"].float(), sd[f"{head}.bias"].float()
    w4 = widths[-1]
    blocks = {m: w[:, j * w4:(j + 1) * w4] for j, m in enumerate(modalities)}
    w = torch.cat([blocks[m] for m in geo_order], 1)
    if rows is not None:
        idx = torch.as_tensor(np.asarray(rows, np.int64))
        w, b = w[idx], b[idx]
    out["head.weight"], out["head.bias"] = w.contiguous(), b.contiguous()
    kw = dict(n_species=int(w.shape[0]), s2_channels=_CHANNELS["s2"], patch_size=PAPER["patch_size"],
              climate_shape=PAPER["climate_shape"], landsat_shape=PAPER["landsat_shape"], widths=widths,
              modalities=tuple(geo_order))
    if FLOOR_POOLING_SUPPORTED:
        kw[FLOOR_POOL_FIELD] = False
    return SDMConfig(**kw), out


def notebook_normalizer(modalities: Iterable[str] = MODALITIES) -> Normalizer:
    """The notebooks' input normalisation: Sentinel-2 ``(x - 127.5) / 127.5`` per channel, the
    climate and Landsat cubes raw (mean 0, std 1). Every modality by default: GeoFlora's batches
    carry all three whatever the model uses."""
    mean, std = {}, {}
    for m in modalities:
        c = _CHANNELS[m]
        s2 = m == "s2"
        mean[m] = np.full(c, NOTEBOOK_S2_MEAN if s2 else 0.0, np.float32)
        std[m] = np.full(c, NOTEBOOK_S2_STD if s2 else 1.0, np.float32)
    return Normalizer(mean, std)


def _random_batch(config: SDMConfig, n: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shapes = {"s2": (config.s2_channels, config.patch_size, config.patch_size),
              "climate": config.climate_shape, "landsat": config.landsat_shape}
    return {m: torch.randn((n, *shapes[m]), generator=g) for m in config.modalities}


@torch.no_grad()
def equivalence_check(sd: Mapping[str, torch.Tensor], model: MultimodalSDM, layout: str,
                      modalities: Sequence[str], rows: np.ndarray | None = None, seed: int = 0) -> dict:
    """Largest absolute difference between the published forward and ``model``, per encoder and
    on the logits, on random inputs of the model's shapes; ``exact`` when all are float rounding."""
    model.eval()
    batch = _random_batch(model.config, seed=seed)
    sdf = {k: v.float() for k, v in sd.items()}
    out: dict = {"inputs": {m: list(v.shape[1:]) for m, v in batch.items()}}
    ok = True
    for m in modalities:
        ref = _published_encoder(sdf, _prefix(layout, m), batch[m])
        got = model.encoders[m](batch[m])
        d = float((ref - got).abs().max())
        out[m] = d
        ok &= d <= 1e-4 * max(1.0, float(ref.abs().max()))
    ref = reference_logits(sdf, batch, modalities[0] if layout == "single" else None)
    if rows is not None:
        ref = ref[:, torch.as_tensor(np.asarray(rows, np.int64))]
    got = model(batch)
    out["logits"] = float((ref - got).abs().max())
    out["exact"] = bool(ok and out["logits"] <= 1e-4 * max(1.0, float(ref.abs().max())))
    out["pooling"] = "floor, as published" if FLOOR_POOLING_SUPPORTED else \
        "ceil (GeoFlora's encoder); the notebooks floor, so odd-sized inputs (climate 19 x 12, Landsat 4 x 21) differ"
    return out


# ---------------------------------------------------------------------------------------------
# species index

def read_species_index(path: str | Path | None, n_outputs: int | None) -> np.ndarray:
    """``speciesId`` of each output, in output order, from ``path``:

    * ``"identity"`` (or None): output ``i`` is ``speciesId`` ``i`` (the notebooks' convention);
    * ``.csv`` / ``.tsv``: a ``speciesId`` (or ``species_id``, ``id``) column, or a single column
      of integers without a header, one row per output;
    * ``.json``: a list, or a dict with a ``species_ids`` / ``speciesId`` list, or
      ``{"0": id0, "1": id1, ...}`` (output index -> speciesId);
    * ``.pt`` / ``.pth``: a 1-D tensor or list (or a dict as in JSON); ``.npy``: a 1-D array;
    * ``.txt``: one integer per line.

    The ids must be unique integers, as many as the model has outputs (``n_outputs``; None: any
    number, e.g. a list of species to keep).
    """
    if path is None or str(path) == "identity":
        if n_outputs is None:
            raise CheckpointError("'identity' needs the number of outputs")
        return np.arange(n_outputs, dtype=np.int64)
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no species index at {path} (a file of speciesId in output order, or 'identity')")
    ext = path.suffix.lower()
    try:
        if ext in (".csv", ".tsv"):
            ids = _csv_ids(path, "\t" if ext == ".tsv" else ",")
        elif ext == ".json":
            ids = _obj_ids(json.loads(path.read_text(encoding="utf-8")))
        elif ext in (".pt", ".pth"):
            ids = _obj_ids(torch.load(path, map_location="cpu", weights_only=True))
        elif ext == ".npy":
            ids = np.load(path, allow_pickle=False)
        elif ext == ".txt":
            ids = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        else:
            raise ValueError(f"unknown extension {ext!r}: use .csv, .tsv, .json, .pt, .pth, .npy or .txt")
        arr = np.asarray(ids)
        if arr.ndim != 1:
            raise ValueError(f"expected a 1-D list of speciesId, got shape {arr.shape}")
        as_float = arr.astype(np.float64)
        if not np.all(np.isfinite(as_float)) or not np.all(as_float == np.round(as_float)):
            raise ValueError("speciesId values must be integers")
        arr = as_float.astype(np.int64)
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001 - every unreadable index is the same error to the user
        raise CheckpointError(f"species index {path}: {exc}") from exc
    if n_outputs is not None and len(arr) != n_outputs:
        raise CheckpointError(f"species index {path} lists {len(arr)} species; the model has {n_outputs} outputs")
    uniq, counts = np.unique(arr, return_counts=True)
    if (counts > 1).any():
        raise CheckpointError(f"species index {path} lists speciesId {int(uniq[counts > 1][0])} more than once "
                              "(a GeoPlant metadata CSV, one row per record, is not an index; the notebooks' "
                              "outputs are indexed by speciesId itself: --species identity)")
    return arr


def _csv_ids(path: Path, delimiter: str) -> list:
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = [r for r in csv.reader(f, delimiter=delimiter) if r and any(c.strip() for c in r)]
    if not rows:
        raise ValueError("empty file")
    header = [c.strip() for c in rows[0]]
    for name in ("speciesId", "species_id", "id"):
        if name in header:
            j = header.index(name)
            return [r[j].strip() for r in rows[1:]]
    if len(header) == 1:
        try:
            float(header[0])
            return [r[0].strip() for r in rows]
        except ValueError:
            return [r[0].strip() for r in rows[1:]]
    raise ValueError(f"no speciesId column (columns: {', '.join(header)})")


def _obj_ids(obj) -> list:
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, Mapping):
        for k in ("species_ids", "speciesId", "species"):
            if k in obj:
                return _obj_ids(obj[k])
        keys = sorted(obj, key=lambda k: int(k))
        if [int(k) for k in keys] != list(range(len(keys))):
            raise ValueError("a dict index must map output indices 0..S-1 to speciesId")
        return [obj[k] for k in keys]
    return list(obj)


# ---------------------------------------------------------------------------------------------
# the import

def _normalizer(normalizer, modalities: Sequence[str], data) -> tuple[Normalizer, str]:
    """The normaliser of the import, over every modality (GeoFlora's batches carry all three);
    ``modalities`` (the model's) must be covered by a given one."""
    if isinstance(normalizer, Normalizer):
        norm, source = normalizer, "given"
    elif normalizer in (None, "notebook"):
        return notebook_normalizer(), "notebook: Sentinel-2 (x - 127.5) / 127.5, cubes raw"
    elif normalizer == "identity":
        return Normalizer({m: np.zeros(_CHANNELS[m], np.float32) for m in MODALITIES},
                          {m: np.ones(_CHANNELS[m], np.float32) for m in MODALITIES}), "identity"
    elif normalizer == "fit":
        if data is None:
            raise ValueError("normalizer='fit' takes its statistics from the calibration data: give calibrate_with")
        return Normalizer.fit(data.inputs), "fit on the calibration data"
    else:
        p = Path(normalizer)
        if not p.is_file():
            raise ValueError(f"normalizer must be 'notebook', 'identity', 'fit' or a JSON file; {p} does not exist")
        norm, source = Normalizer.from_dict(json.loads(p.read_text(encoding="utf-8"))), f"from {p}"
    for m in modalities:
        if m not in norm.mean or len(norm.mean[m]) != _CHANNELS[m] or len(norm.std.get(m, ())) != _CHANNELS[m]:
            raise ValueError(f"normalizer ({source}): needs {_CHANNELS[m]} means and stds for {m}")
    base = notebook_normalizer()  # modalities the model does not use: any values, never read by it
    return Normalizer({**base.mean, **norm.mean}, {**base.std, **norm.std}), source


def calibration_thresholds(model: MultimodalSDM, norm: Normalizer, data, alpha: float = 0.1,
                           platt: bool = False) -> tuple[dict, dict]:
    """Thresholds (and a report) as ``geoflora train sdm`` computes them: conformal and F1-optimal
    on the calibration blocks of ``data``, omission and metrics on its test blocks; ``platt`` also
    fits the probability calibration there and folds it into the head (in place)."""
    cal, test = data.part(CAL, pa_only=True), data.part(TEST, pa_only=True)
    if len(cal) == 0:
        raise ValueError("the calibration data has no survey in the calibration blocks")
    report: dict = {"n_cal": len(cal), "n_test": len(test)}
    if platt:
        calib = fit_calibration(predict_logits(model, norm, cal), cal.labels, cal.area)
        calib.fold_into(model.head)
        report["calibration"] = calib.to_dict()
    cal_prob = predict(model, norm, cal)
    thresholds = conformal.calibrate(cal.labels, cal_prob, alpha, cal.x, cal.y, cal.block)
    if len(test):
        test_prob = predict(model, norm, test)
        report["test"] = evaluate(test.labels, test_prob, thresholds["f1_optimal"])
        report["test"].update(conformal.held_out_report(test.labels, test_prob, thresholds, test.block))
    return thresholds, report


def import_geoplant_state_dict(state_dict_path: str | Path, species_index_path: str | Path | None, out: str | Path, *,
                               modality: str | None = None, keep_species: Iterable[int] | None = None,
                               normalizer: Normalizer | str | Path | None = "notebook",
                               calibrate_with: str | Path | GeoPlantLayout | None = None, alpha: float = 0.1,
                               platt: bool = False, seed: int = 0, max_surveys: int | None = None,
                               check: bool = True, progress: bool = False) -> dict:
    """Write the GeoFlora SDM checkpoint ``out`` from a published GeoPlant baseline state dict.

    ``species_index_path``: :func:`read_species_index` (``"identity"``: the notebooks' outputs
    indexed by speciesId). ``modality``: for a single-modality ResNet6. ``keep_species``: keep
    only these speciesId (e.g. those of the region's species table; the notebooks' 11,255
    outputs include ids no survey has). ``normalizer``: ``"notebook"`` (default),
    ``"identity"``, ``"fit"`` (statistics of the calibration data), a JSON file of
    ``Normalizer.to_dict()`` or a :class:`Normalizer`. ``calibrate_with``: a GeoPlant folder (or
    layout) for the conformal threshold (``alpha``), split into 10 km blocks by ``seed``;
    ``platt`` also calibrates the probabilities there. Returns the import report (also stored
    in the checkpoint's ``report``).
    """
    state_dict_path = Path(state_dict_path)
    sd = load_published_state_dict(state_dict_path)
    layout, mods = detect_layout(sd, modality)
    check_state_dict(sd, layout, mods)
    head = "fc1" if layout == "ensemble" else "fc"
    n_out = int(sd[f"{head}.weight"].shape[0])
    species_ids = read_species_index(species_index_path, n_out)
    rows = None
    dropped_keep: list[int] = []
    if keep_species is not None:
        keep = [int(s) for s in keep_species]
        pos = {int(s): i for i, s in enumerate(species_ids)}
        dropped_keep = [s for s in keep if s not in pos]
        rows = np.array(sorted({pos[s] for s in keep if s in pos}), np.int64)
        if len(rows) == 0:
            raise CheckpointError("none of the species to keep is an output of the published model")
        species_ids = species_ids[rows]
    config, mapped = map_state_dict(sd, layout, mods, rows)
    model = MultimodalSDM(config)
    model.load_state_dict(mapped, strict=True)
    model.eval()

    report: dict = {
        "source": {"state_dict": str(state_dict_path), "layout": layout, "modalities": list(mods),
                   "species_index": str(species_index_path or "identity"), "outputs": n_out},
        "n_species": len(species_ids), "keep_species_not_in_model": dropped_keep,
    }
    if check:
        report["check"] = equivalence_check(sd, model, layout, mods, rows, seed)
    data = None
    if calibrate_with is not None:
        layout_or_root = calibrate_with if isinstance(calibrate_with, GeoPlantLayout) else Path(calibrate_with)
        data = geoplant_samples(layout_or_root, species_ids=species_ids, seed=seed, s2_size=config.patch_size,
                                max_surveys=max_surveys, progress=progress)
        report["calibration_data"] = str(getattr(data, "summary", calibrate_with))
    norm, norm_source = _normalizer(normalizer, config.modalities, data)
    report["normalizer"] = norm_source
    if data is not None:
        thresholds, cal_report = calibration_thresholds(model, norm, data, alpha, platt)
        thresholds["source"] = f"calibrated on {calibrate_with}"
        report.update(cal_report)
    else:
        thresholds = {"alpha": None, "f1_optimal": 0.5, "source": "default (no calibration data)"}
        report["warning"] = ("no conformal threshold: `geoflora compute` needs a conformal threshold; "
                             "import again with calibration data (--calibrate-with GEOPLANT_DIR)")
    report["thresholds"] = thresholds
    train_config = {"imported_from": str(state_dict_path), "layout": layout, "modality": modality, "seed": seed,
                    "alpha": alpha, "platt": platt, "normalizer": norm_source}
    save_sdm(Path(out), model, norm, species_ids, thresholds, report, train_config)
    return report
