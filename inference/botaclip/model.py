"""BotaCLIP: a frozen Earth-observation encoder + a light residual adapter, aligned contrastively
with an encoder of botanical releves (the species list of a survey plot).

Image tower::

    x [N, 4, P, P]  (S2 R, G, B, NIR, standardised per band)
      -> frozen encoder            h  [N, F]        (never trained here)
      -> frozen projection         h0 = Pi (h - mu) [N, D]  (PCA of h, fitted once on TRAIN; not trained)
      -> residual adapter          e  = h0 + MLP(LayerNorm(h))   (last layer zero-initialised: e = h0 at start)
      -> embedding                 e / |e|           [N, D]

Releve tower: EmbeddingBag(species ids, mean) -> MLP -> [N, D], normalised.
Loss: symmetric InfoNCE with a learnable temperature, plus ``reg_weight * mean(1 - cos(e, h0))``, which
keeps the adapted embedding close to the frozen encoder's own (projected) representation.

Frozen encoders:

* ``CellCNN`` (demo): a stem conv 5 x 5 with stride 5 (one token per 50 m grid cell: S2 is 10 m),
  then unpadded ("valid") 3 x 3 convolutions and a mean over the remaining window. Every cell's patch
  starts on the same 5-pixel lattice, so one pass over a meta-tile image gives every cell's features
  exactly (box means of the feature map) -- see ``inference.botaclip.embed``.
* ``HFImageEncoder``: any ``transformers`` vision backbone saved with ``save_pretrained`` in a local
  folder (DINOv2, ViT...; ``eo_encoder_path``); 4-channel models get R, G, B, NIR, 3-channel ones R, G, B.
  Never downloaded from a hub (``local_files_only``).
* a TorchScript module ``[N, 4, P, P] -> [N, F]`` (e.g. a DOFA backbone traced with its wavelengths
  fixed to R, G, B, NIR).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from transformers import AutoConfig, AutoModel

from inference.checkpoint import load_checkpoint, save_torch
from inference.sdm.preprocess import Normalizer

CELL_PX = 5  # Sentinel-2 10 m pixels per 50 m grid cell
N_BANDS = 4  # R, G, B, NIR
ENCODER_FORMAT = "geoflora-eo-encoder"
CHECKPOINT_FORMAT = "geoflora-botaclip"
CHECKPOINT_VERSION = 1


class BandError(ValueError):
    """An image batch or encoder with a band count other than the 4 S2 bands R, G, B, NIR."""


def check_bands(x: torch.Tensor, expected: int = N_BANDS) -> None:
    if x.ndim != 4 or x.shape[1] != expected:
        raise BandError(f"expected image patches [N, {expected}, P, P] (S2 R, G, B, NIR), got shape {tuple(x.shape)}")


# ---------------------------------------------------------------------------------------------
# frozen encoders

@dataclass(frozen=True)
class CellCNNConfig:
    bands: int = N_BANDS
    patch_size: int = 80  # S2 pixels (800 m): a multiple of CELL_PX
    stem: int = 32
    widths: tuple[int, ...] = (64, 64, 128)

    @property
    def window(self) -> int:
        """Cells per side of the final feature map of one patch (what the mean pools over)."""
        return self.patch_size // CELL_PX - 2 * len(self.widths)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> CellCNNConfig:
        d = dict(d)
        d["widths"] = tuple(d["widths"])
        return cls(**d)


class CellCNN(nn.Module):
    """Fully convolutional S2 encoder on the 50 m cell lattice: shared features across overlapping patches."""

    shared = True  # embed.py may compute a whole meta-tile in one pass

    def __init__(self, config: CellCNNConfig = CellCNNConfig()) -> None:
        super().__init__()
        if config.patch_size % CELL_PX:
            raise ValueError(f"patch_size must be a multiple of {CELL_PX} S2 pixels (one 50 m cell)")
        if config.window < 1:
            raise ValueError(f"patch_size {config.patch_size} is too small for {len(config.widths)} valid 3x3 convs")
        self.config = config
        self.patch_size = config.patch_size
        self.in_bands = config.bands
        layers: list[nn.Module] = [nn.Conv2d(config.bands, config.stem, CELL_PX, stride=CELL_PX, bias=False),
                                   nn.BatchNorm2d(config.stem), nn.ReLU()]
        cin = config.stem
        for w in config.widths:
            layers += [nn.Conv2d(cin, w, 3, bias=False), nn.BatchNorm2d(w), nn.ReLU()]
            cin = w
        self.net = nn.Sequential(*layers)
        self.out_features = cin

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """[N, 4, H, W] (H, W multiples of 5) -> [N, F, H/5 - 2L, W/5 - 2L] on the cell lattice."""
        check_bands(x, self.in_bands)
        return self.net(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.patch_size or x.shape[-2] != self.patch_size:
            raise ValueError(f"expected {self.patch_size} x {self.patch_size} patches, got {tuple(x.shape[-2:])}")
        return self.feature_map(x).mean(dim=(2, 3))


class HFImageEncoder(nn.Module):
    """A local ``transformers`` vision backbone (DINOv2, ViT...): pooled output (or CLS token)."""

    shared = False

    def __init__(self, path: Path, patch_size: int = 56) -> None:
        super().__init__()

        cfg = AutoConfig.from_pretrained(str(path), local_files_only=True)
        nc = int(getattr(cfg, "num_channels", 3))
        if nc == 4:
            bands = [0, 1, 2, 3]
        elif nc == 3:
            bands = [0, 1, 2]  # an RGB backbone sees R, G, B (NIR is left out)
        else:
            raise BandError(f"{path}: the encoder takes {nc} input channels; BotaCLIP feeds 4 S2 bands "
                            "(R, G, B, NIR) or their first 3 (RGB)")
        self.model = AutoModel.from_pretrained(str(path), local_files_only=True)
        self.register_buffer("bands", torch.tensor(bands), persistent=False)
        self.patch_size = patch_size
        self.in_bands = N_BANDS
        self.out_features = int(cfg.hidden_size)
        self.path = str(path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_bands(x, self.in_bands)
        out = self.model(pixel_values=x[:, self.bands])
        pooled = getattr(out, "pooler_output", None)
        return pooled if pooled is not None else out.last_hidden_state[:, 0]


class ScriptedEncoder(nn.Module):
    """A TorchScript module [N, 4, P, P] -> [N, F] (e.g. a DOFA backbone with R, G, B, NIR wavelengths)."""

    shared = False

    def __init__(self, path: Path, patch_size: int = 64) -> None:
        super().__init__()
        self.model = torch.jit.load(str(path), map_location="cpu")
        self.patch_size = patch_size
        self.in_bands = N_BANDS
        with torch.no_grad():
            out = self.model(torch.zeros(1, N_BANDS, patch_size, patch_size))
        if out.ndim != 2:
            raise ValueError(f"{path}: a scripted encoder must return [N, F], returned {tuple(out.shape)}")
        self.out_features = int(out.shape[1])
        self.path = str(path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_bands(x, self.in_bands)
        return self.model(x)


def save_cell_cnn(encoder: CellCNN, path: Path, info: dict | None = None) -> None:
    save_torch(path, {"format": ENCODER_FORMAT, "kind": "cell-cnn", "config": encoder.config.to_dict(),
                      "state_dict": encoder.state_dict(), "info": info or {}})


def load_frozen_encoder(path: Path | str | None, patch_size: int | None = None) -> nn.Module:
    """The frozen encoder at ``path`` (``eo_encoder_path``): a GeoFlora CellCNN checkpoint, a local
    ``transformers`` folder or a TorchScript file. Raises ``FileNotFoundError`` when it is not there."""
    if path is None:
        raise FileNotFoundError("no EO encoder path given (set GEOFLORA_EO_ENCODER_PATH to a local weights "
                                "folder or file, or train the demo encoder)")
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"EO encoder weights not found at {p} (GEOFLORA_EO_ENCODER_PATH must name a local "
                                "transformers folder, a GeoFlora eo-encoder .pt or a TorchScript file; "
                                "weights are never downloaded)")
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise FileNotFoundError(f"{p} has no config.json: not a transformers model folder")
        enc = HFImageEncoder(p, patch_size or 56)
    else:
        try:
            ck = torch.load(p, map_location="cpu", weights_only=False)
        except Exception:  # noqa: BLE001 - not a pickle: try TorchScript
            ck = None
        if isinstance(ck, dict) and ck.get("format") == ENCODER_FORMAT:
            enc = CellCNN(CellCNNConfig.from_dict(ck["config"]))
            enc.load_state_dict(ck["state_dict"])
            enc.normalizer = ck.get("info", {}).get("normalizer")  # S2 scaling it was pretrained with
        elif ck is None or isinstance(ck, torch.jit.ScriptModule):
            enc = ScriptedEncoder(p, patch_size or 64)
        else:
            raise ValueError(f"{p} is neither a GeoFlora eo-encoder checkpoint nor a TorchScript module")
    return freeze(enc)


def model_device(module: nn.Module) -> torch.device:
    """Where ``module``'s weights live (inputs are moved there; the CPU for a module without any)."""
    return next((p.device for p in module.parameters()), torch.device("cpu"))


def freeze(module: nn.Module) -> nn.Module:
    for prm in module.parameters():
        prm.requires_grad_(False)
    return module.eval()


# ---------------------------------------------------------------------------------------------
# BotaCLIP

@dataclass
class BotaCLIPConfig:
    dim: int = 64  # embedding size D (shared space)
    adapter_hidden: int = 128
    species_dim: int = 128
    species_hidden: int = 256
    reg_weight: float = 1.0  # weight of mean(1 - cos(adapted, frozen projection))
    whiten: bool = False  # frozen projection: PCA (False) or whitened PCA (True)
    init_temperature: float = 0.07
    max_logit_scale: float = 100.0
    # training
    epochs: int = 200
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-4
    species_dropout: float = 0.2  # each listed species is hidden with this chance (training only)
    n_views: int = 8  # dihedral views of each TRAIN patch whose frozen features are precomputed
    patience: int = 30  # epochs without better CAL retrieval before stopping
    seed: int = 0
    # the demo encoder (when no eo_encoder_path is set)
    cnn: dict = field(default_factory=lambda: CellCNNConfig().to_dict())
    eo_patch_size: int = 56  # S2 pixels fed to an encoder from eo_encoder_path (DINOv2 /14: 4 x 4 tokens)
    ssl_steps: int = 300  # SimCLR pretraining of the demo encoder before freezing it (0: random-init)
    ssl_patches: int = 4000
    ssl_batch: int = 128
    pca_cells: int = 4000  # random cells of the region for the PCA colours

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> BotaCLIPConfig:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})


class ResidualAdapter(nn.Module):
    """e = h0 + MLP(LayerNorm(h)); the last layer starts at zero so that e = h0 before training."""

    def __init__(self, in_features: int, dim: int, hidden: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.LayerNorm(in_features), nn.Linear(in_features, hidden), nn.GELU(),
                                 nn.Linear(hidden, dim))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, h: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
        return h0 + self.mlp(h)


class SpeciesListEncoder(nn.Module):
    """A releve (set of species indices) -> [D]: mean of species embeddings, then an MLP."""

    def __init__(self, n_species: int, dim: int, emb: int = 128, hidden: int = 256) -> None:
        super().__init__()
        self.bag = nn.EmbeddingBag(n_species, emb, mode="mean")
        self.mlp = nn.Sequential(nn.LayerNorm(emb), nn.Linear(emb, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.n_species = n_species

    def forward(self, ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.bag(ids, offsets))


def lists_to_bag(lists: list, dropout: float = 0.0, rng=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Species index lists -> (flat ids, offsets) for EmbeddingBag; ``dropout`` hides species (>= 1 kept)."""
    ids, offsets, pos = [], [], 0
    for lst in lists:
        lst = np.asarray(lst, np.int64)
        if dropout > 0 and len(lst) > 1:
            keep = rng.random(len(lst)) >= dropout
            if not keep.any():
                keep[rng.integers(len(lst))] = True
            lst = lst[keep]
        offsets.append(pos)
        ids.append(lst)
        pos += len(lst)
    flat = np.concatenate(ids) if ids else np.zeros(0, np.int64)
    return torch.from_numpy(flat), torch.tensor(offsets, dtype=torch.long)


class BotaCLIP(nn.Module):
    """Frozen encoder, frozen projection, residual adapter, releve encoder, learnable temperature."""

    def __init__(self, encoder: nn.Module, n_species: int, config: BotaCLIPConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = freeze(encoder)
        F_ = int(encoder.out_features)
        D = config.dim
        self.register_buffer("proj_mean", torch.zeros(F_))
        self.register_buffer("proj", torch.eye(D, F_))  # replaced by fit_projection
        self.adapter = ResidualAdapter(F_, D, config.adapter_hidden)
        self.species = SpeciesListEncoder(n_species, D, config.species_dim, config.species_hidden)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / config.init_temperature)))

    @property
    def patch_size(self) -> int:
        return int(self.encoder.patch_size)

    @property
    def dim(self) -> int:
        return self.config.dim

    def train(self, mode: bool = True) -> BotaCLIP:
        super().train(mode)
        self.encoder.eval()  # frozen: BatchNorm statistics never move
        return self

    @torch.no_grad()
    def fit_projection(self, h: torch.Tensor) -> None:
        """PCA of frozen features [N, F] onto D components (zero rows if F < D), scaled by one global
        factor (unit mean variance per kept component): the frozen geometry, centred, in D dimensions.
        ``config.whiten`` gives every component unit variance instead (noisy small components then
        weigh as much as the main ones in the cosine)."""
        D = self.config.dim
        mu = h.mean(0)
        hc = (h - mu).double()
        cov = hc.T @ hc / max(len(h) - 1, 1)
        evals, evecs = torch.linalg.eigh(cov)
        order = torch.argsort(evals, descending=True)[:D]
        evals, evecs = evals[order].clamp_min(1e-8), evecs[:, order]
        scale = evals.sqrt() if self.config.whiten else evals.mean().sqrt().expand_as(evals)
        P = (evecs / scale).T.float()  # [k, F]
        full = torch.zeros(D, h.shape[1])
        full[:len(P)] = P
        self.proj_mean.copy_(mu)
        self.proj.copy_(full)

    def frozen_projection(self, h: torch.Tensor) -> torch.Tensor:
        return (h - self.proj_mean) @ self.proj.T

    def adapt(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(adapted e, frozen projection h0) of frozen features h [N, F] (both unnormalised, [N, D])."""
        h0 = self.frozen_projection(h)
        return self.adapter(h, h0), h0

    def embed_features(self, h: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.adapt(h)[0], dim=-1)

    @torch.no_grad()
    def frozen_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def embed_images(self, x: torch.Tensor) -> torch.Tensor:
        """Standardised S2 patches [N, 4, P, P] -> unit embeddings [N, D]."""
        return self.embed_features(self.frozen_features(x))

    def embed_lists(self, ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.species(ids, offsets), dim=-1)

    def loss(self, h: torch.Tensor, ids: torch.Tensor, offsets: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Symmetric InfoNCE + reg_weight * (1 - cos(e, h0)); returns (loss, parts)."""
        e, h0 = self.adapt(h)
        zi = F.normalize(e, dim=-1)
        zt = self.embed_lists(ids, offsets)
        scale = self.logit_scale.clamp(max=math.log(self.config.max_logit_scale)).exp()
        logits = scale * zi @ zt.T
        target = torch.arange(len(h), device=h.device)
        nce = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
        reg = (1 - F.cosine_similarity(e, h0, dim=-1)).mean()
        total = nce + self.config.reg_weight * reg
        return total, {"infonce": float(nce.detach()), "reg": float(reg.detach()), "scale": float(scale.detach())}


# ---------------------------------------------------------------------------------------------
# frozen features and checkpoints

def dihedral(arr: np.ndarray, k: int) -> np.ndarray:
    """View k in 0..7 of [..., H, W]: k % 4 quarter turns, mirrored when k >= 4."""
    out = np.rot90(arr, k % 4, axes=(-2, -1))
    return out[..., ::-1] if k >= 4 else out


@torch.no_grad()
def encode(encoder, norm: Normalizer, s2: np.ndarray, batch: int = 256, view: int = 0) -> torch.Tensor:
    """Frozen features [N, F] of uint16 S2 patches (centre-cropped to the encoder's patch size)."""
    P = encoder.patch_size
    if s2.ndim != 4 or s2.shape[1] != encoder.in_bands:
        raise BandError(f"expected S2 patches [N, {encoder.in_bands}, P, P] (R, G, B, NIR), got {s2.shape}")
    if s2.shape[-1] < P:
        raise ValueError(f"patches of {s2.shape[-1]} px are smaller than the encoder's {P}")
    off = (s2.shape[-1] - P) // 2
    encoder.eval()
    dev = model_device(encoder)
    out = []
    for i in range(0, len(s2), batch):
        a = s2[i:i + batch, :, off:off + P, off:off + P]
        if view:
            a = dihedral(a, view)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):  # mixed precision on GPU
            out.append(encoder(norm.apply("s2", np.ascontiguousarray(a)).to(dev)).float())
    return torch.cat(out) if out else torch.zeros(0, encoder.out_features)


def save_botaclip(model: BotaCLIP, norm: Normalizer, species_ids, pca: dict, report: dict, out: Path) -> None:
    enc = model.encoder
    if isinstance(enc, CellCNN):
        encoder = {"kind": "cell-cnn", "config": enc.config.to_dict(), "state_dict": enc.state_dict()}
    elif isinstance(enc, (HFImageEncoder, ScriptedEncoder)):
        # large pretrained weights stay where they are; the checkpoint names them
        encoder = {"kind": "path", "path": enc.path, "patch_size": int(enc.patch_size)}
    else:
        raise TypeError(f"cannot save a BotaCLIP whose encoder is a {type(enc).__name__}")
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("encoder.")}
    save_torch(out, {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "config": model.config.to_dict(),
                      "encoder": encoder, "normalizer": norm.to_dict(), "state_dict": state,
                      "species_ids": np.asarray(species_ids).tolist(), "pca": pca,
                      "report": {k: v for k, v in report.items() if k != "history"}})


def load_botaclip(path: Path, encoder_path: Path | None = None) -> BotaCLIP:
    """A trained BotaCLIP (eval mode) with ``.norm``, ``.pca_colours``, ``.species_ids``, ``.report``.

    ``encoder_path`` overrides where a path-referenced (non-demo) encoder is read from."""
    ck = load_checkpoint(path, CHECKPOINT_FORMAT, (CHECKPOINT_VERSION,), "botaclip")
    enc_d = ck["encoder"]
    if enc_d["kind"] == "cell-cnn":
        encoder = CellCNN(CellCNNConfig.from_dict(enc_d["config"]))
        encoder.load_state_dict(enc_d["state_dict"])
    else:
        encoder = load_frozen_encoder(encoder_path or enc_d["path"], enc_d.get("patch_size"))
    config = BotaCLIPConfig.from_dict(ck["config"])
    model = BotaCLIP(encoder, len(ck["species_ids"]), config)
    missing, unexpected = model.load_state_dict(ck["state_dict"], strict=False)
    bad = [k for k in missing if not k.startswith("encoder.")] + list(unexpected)
    if bad:
        raise ValueError(f"{path}: checkpoint does not fit the model ({', '.join(bad[:5])})")
    model.eval()
    model.norm = Normalizer.from_dict(ck["normalizer"])
    model.pca_colours = ck["pca"]
    model.species_ids = np.asarray(ck["species_ids"])
    model.report = ck.get("report", {})
    return model
