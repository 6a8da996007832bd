"""PlantTraitNet: frozen image (and depth) encoders, a Climplicit-style geo encoder, a residual MLP
trunk and per-trait mean / log-variance heads.

Architecture (paper size, :data:`PAPER`)::

    photo -> DINOv2 ViT-B/14 (frozen) -> patch tokens [N_tok, 768] -> adaptive avg-pool over the
             tokens to 32 -> flatten 32 x 768 -> Linear -> 768
    photo -> Depth-Anything-V2 ViT-B encoder (frozen, optional) -> last-layer patch tokens ->
             pool to 64 -> flatten -> Linear -> 768
    (lon, lat, month) -> SIREN (sine-activated MLP, Climplicit-style) -> 1024 -> Linear -> 256
    concat -> LayerNorm -> Linear(1024) -> 8 residual blocks (BN, Linear 2048, LeakyReLU, dropout,
             Linear 1024, dropout; x + block(x)) -> per trait a mean head and a log-variance head

Targets are the log traits standardised with the training-set mean and sd of the species log
medians; every head works in those units. Losses: Laplace NLL for leaf area, Gaussian NLL for
height, SLA and leaf N (:func:`trait_nll`). The log-variance head is a log *variance* for every
trait; for the Laplace traits the scale is ``b = sqrt(var / 2)`` (a Laplace with scale b has
variance 2 b^2), so the predicted variances of all traits are comparable and can be summed into the
joint uncertainty used by the cleaning loop.

The frozen encoders (:class:`FrozenEncoders`) are separate from the trainable part
(:class:`TraitNet`): their outputs are computed once per photo and cached, which makes training
cheap on a CPU. Pretrained weights are only ever read from local folders (``Settings.dinov2_path``,
``Settings.depth_anything_path``, ``Settings.climplicit_path``); without them a small randomly
initialised ViT (seeded, stored in the checkpoint) stands in for DINOv2, which is what the demo and
the tests use.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from transformers import AutoModel, DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, Dinov2Model

TRAITS = ("Height", "LeafArea", "SLA", "Leaf_N")
LAPLACE_TRAITS = ("LeafArea",)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LOGVAR_RANGE = (-7.0, 4.0)  # clamp of the log-variance heads (standardised units)

# A small ViT in the DINOv2 architecture for 64 x 64 photos: 8 x 8 patches of 8 px.
TINY_VIT = dict(hidden_size=96, num_hidden_layers=3, num_attention_heads=4, intermediate_size=192,
                image_size=64, patch_size=8)
TINY_DEPTH_VIT = dict(hidden_size=48, num_hidden_layers=2, num_attention_heads=2, intermediate_size=96,
                      image_size=64, patch_size=8)


class WeightsNotFoundError(FileNotFoundError):
    """A local pretrained-weights path from the settings that does not exist or is incomplete."""


@dataclass(frozen=True)
class TraitNetConfig:
    traits: tuple[str, ...] = TRAITS
    laplace_traits: tuple[str, ...] = LAPLACE_TRAITS
    # image encoder (frozen): a DINOv2 ViT; ``vit`` is the Dinov2Config of the random stand-in
    image_size: int = 64
    vit: dict = field(default_factory=lambda: dict(TINY_VIT))
    image_pool: int = 32
    image_out: int = 768
    # depth encoder (frozen, optional): the backbone of DepthAnythingForDepthEstimation
    use_depth: bool = False
    depth_vit: dict = field(default_factory=lambda: dict(TINY_DEPTH_VIT))
    depth_pool: int = 64
    depth_out: int = 768
    # geo encoder (SIREN over lon, lat, month)
    use_geo: bool = True
    geo_hidden: int = 256
    geo_layers: int = 3
    geo_embed: int = 1024
    geo_out: int = 256
    geo_w0: float = 30.0  # frequency of the first sine layer (inputs lon/180, lat/90)
    # trunk
    fusion_dim: int = 1024
    n_blocks: int = 8
    block_hidden: int = 2048
    dropout: float = 0.1
    encoder_seed: int = 0  # initialisation of the random stand-in encoders

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TraitNetConfig:
        d = dict(d)
        for k in ("traits", "laplace_traits"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)


# Paper size: DINOv2 ViT-B/14 at 224 px (load it with Settings.dinov2_path), Depth-Anything-V2
# ViT-B, Climplicit 1024-d, fusion 1024, 8 blocks of hidden 2048.
PAPER = dict(image_size=224, vit=dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                                      intermediate_size=3072, image_size=224, patch_size=14),
             image_pool=32, image_out=768, use_depth=True,
             depth_vit=dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                            intermediate_size=3072, image_size=224, patch_size=14),
             depth_pool=64, depth_out=768, geo_hidden=512, geo_layers=4, geo_embed=1024, geo_out=256,
             fusion_dim=1024, n_blocks=8, block_hidden=2048, dropout=0.2)
# Demo size: the tiny random ViT on 64 px photos, no depth, a region-scale geo encoder, a small trunk.
# geo_w0 = 3000 gives first-layer periods of a few km to tens of km over lon/180, lat/90: the
# scale of a 50 km region (30 resolves only continents).
DEMO = dict(image_size=64, image_pool=32, image_out=128, use_depth=False, geo_hidden=64, geo_layers=2,
            geo_embed=128, geo_out=32, geo_w0=3000.0, fusion_dim=128, n_blocks=4, block_hidden=256,
            dropout=0.1)
# Tests: smaller still.
TINY = dict(image_size=64, image_pool=16, image_out=64, use_depth=False, geo_hidden=32, geo_layers=2,
            geo_embed=32, geo_out=16, geo_w0=3000.0, fusion_dim=64, n_blocks=2, block_hidden=128, dropout=0.0)
SIZES = {"paper": PAPER, "demo": DEMO, "tiny": TINY}


def make_config(size: str = "demo", **overrides) -> TraitNetConfig:
    if size not in SIZES:
        raise ValueError(f"unknown model size {size!r}: use one of {', '.join(SIZES)}")
    return TraitNetConfig(**{**SIZES[size], **overrides})


# ---------------------------------------------------------------------------------------------
# losses

_LOG_2PI = math.log(2 * math.pi)


def gaussian_nll(y: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Elementwise -log N(y; mean, exp(logvar)) = 0.5 (log 2 pi + logvar + (y - mean)^2 / exp(logvar))."""
    return 0.5 * (_LOG_2PI + logvar + (y - mean) ** 2 * torch.exp(-logvar))


def laplace_nll(y: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Elementwise -log Laplace(y; mean, b) with variance exp(logvar) = 2 b^2: log(2 b) + |y - mean| / b."""
    log_b = 0.5 * (logvar - math.log(2.0))
    return math.log(2.0) + log_b + torch.abs(y - mean) * torch.exp(-log_b)


def trait_nll(y: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor, laplace: torch.Tensor,
              valid: torch.Tensor | None = None) -> torch.Tensor:
    """Per-trait mean NLL [T] over the batch: Laplace where ``laplace[t]``, Gaussian elsewhere.

    ``y``, ``mean``, ``logvar``: [B, T]; ``laplace``: bool [T]; ``valid``: bool [B, T] (missing
    labels contribute nothing; a trait with no valid label in the batch gets 0).
    """
    y0 = torch.nan_to_num(y)
    nll = torch.where(laplace[None, :], laplace_nll(y0, mean, logvar), gaussian_nll(y0, mean, logvar))
    if valid is None:
        return nll.mean(0)
    v = valid.to(nll.dtype)
    return (nll * v).sum(0) / v.sum(0).clamp_min(1.0)


# ---------------------------------------------------------------------------------------------
# frozen encoders


def _check_weights_dir(path: Path | str, what: str, setting: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise WeightsNotFoundError(
            f"{what} weights not found: {setting} = {p} does not exist. Put a local copy there (a folder "
            f"with config.json and the weights, as saved by transformers' save_pretrained) or unset "
            f"{setting} to use the small randomly initialised stand-in; nothing is downloaded.")
    if p.is_dir() and not (p / "config.json").is_file():
        raise WeightsNotFoundError(f"{what} weights folder {p} ({setting}) has no config.json: expected a "
                                   f"transformers save_pretrained folder")
    return p


def pool_tokens(tokens: torch.Tensor, n: int) -> torch.Tensor:
    """Patch tokens [B, N, C] -> [B, C, n]: adaptive average pooling over the token sequence."""
    return F.adaptive_avg_pool1d(tokens.transpose(1, 2), n)


class FrozenEncoders(nn.Module):
    """The frozen image encoder (DINOv2) and optional depth encoder (Depth-Anything-V2 backbone).

    ``encode(images)`` turns uint8 photos [N, H, W, 3] into pooled token features:
    ``{"image": [N, C, image_pool], "depth": [N, C_d, depth_pool]}``. With a local weights path the
    pretrained model is loaded from it (``local_files_only``); otherwise a ViT of the configured
    shape is initialised from ``config.encoder_seed``.
    """

    def __init__(self, config: TraitNetConfig, dinov2_path: Path | str | None = None,
                 depth_path: Path | str | None = None, state_dict: dict | None = None) -> None:
        super().__init__()

        self.config = config
        self.sources: dict[str, dict] = {}
        with torch.random.fork_rng(devices=[]):  # seeded initialisation; the global RNG is restored after
            torch.manual_seed(config.encoder_seed)
            if dinov2_path is not None:
                p = _check_weights_dir(dinov2_path, "DINOv2", "GEOFLORA_DINOV2_PATH (dinov2_path)")
                self.image = AutoModel.from_pretrained(p, local_files_only=True)
                self.sources["image"] = {"kind": "pretrained", "path": str(p)}
            else:
                self.image = Dinov2Model(Dinov2Config(**config.vit))
                self.sources["image"] = {"kind": "random", "vit": dict(config.vit), "seed": config.encoder_seed}
            self.depth = None
            if config.use_depth:
                if depth_path is not None:
                    p = _check_weights_dir(depth_path, "Depth-Anything-V2",
                                           "GEOFLORA_DEPTH_ANYTHING_PATH (depth_anything_path)")
                    self.depth = DepthAnythingForDepthEstimation.from_pretrained(p, local_files_only=True).backbone
                    self.sources["depth"] = {"kind": "pretrained", "path": str(p)}
                else:
                    dv = dict(config.depth_vit)
                    n = dv.get("num_hidden_layers", 12)
                    bc = Dinov2Config(**dv, out_indices=[n], reshape_hidden_states=False)
                    h = dv["hidden_size"]
                    dc = DepthAnythingConfig(backbone_config=bc.to_dict(), reassemble_hidden_size=h,
                                             neck_hidden_sizes=[h // 4, h // 2, h, 2 * h], fusion_hidden_size=16,
                                             head_hidden_size=8, patch_size=dv["patch_size"])
                    self.depth = DepthAnythingForDepthEstimation(dc).backbone
                    self.sources["depth"] = {"kind": "random", "vit": dv, "seed": config.encoder_seed}
        if state_dict is not None:
            self.load_state_dict(state_dict)
        self.requires_grad_(False)
        self.eval()

    @property
    def image_channels(self) -> int:
        return int(self.image.config.hidden_size)

    @property
    def depth_channels(self) -> int:
        return 0 if self.depth is None else int(self.depth.config.hidden_size)

    @staticmethod
    def _prefix(model) -> int:
        """Tokens before the patch tokens: CLS plus register tokens (DINOv2 with registers)."""
        return 1 + int(getattr(model.config, "num_register_tokens", 0) or 0)

    def preprocess(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 [N, H, W, 3] -> float [N, 3, S, S], resized to ``image_size``, ImageNet-normalised."""
        x = torch.as_tensor(np.asarray(images))
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"expected RGB photos [N, H, W, 3], got shape {tuple(x.shape)}")
        x = x.permute(0, 3, 1, 2).float() / 255.0
        s = self.config.image_size
        if x.shape[-2:] != (s, s):
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        return (x - mean) / std

    @torch.no_grad()
    def forward(self, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        tok = self.image(pixel_values=pixel_values).last_hidden_state[:, self._prefix(self.image):]
        out["image"] = pool_tokens(tok, self.config.image_pool)
        if self.depth is not None:
            fm = self.depth(pixel_values=pixel_values).feature_maps[-1]
            if fm.ndim == 4:  # reshaped hidden states [B, C, h, w]
                tok = fm.flatten(2).transpose(1, 2)
            else:
                tok = fm[:, self._prefix(self.depth):]
            out["depth"] = pool_tokens(tok, self.config.depth_pool)
        return out

    @torch.no_grad()
    def encode(self, images: np.ndarray, batch_size: int = 64) -> dict[str, torch.Tensor]:
        parts: dict[str, list[torch.Tensor]] = {}
        for i in range(0, len(images), batch_size):
            for k, v in self(self.preprocess(images[i:i + batch_size])).items():
                parts.setdefault(k, []).append(v.float())
        if not parts:
            return {"image": torch.zeros(0, self.image_channels, self.config.image_pool)}
        return {k: torch.cat(v) for k, v in parts.items()}

    def fingerprint(self) -> str:
        """A hash of the encoders' weights and preprocessing (the feature-cache key)."""
        h = hashlib.sha1(repr((self.config.image_size, self.config.image_pool, self.config.depth_pool)).encode())
        for k, v in sorted(self.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

    def random_state(self) -> dict | None:
        """Weights to store in a checkpoint: only those of random stand-ins (pretrained ones stay in their folder)."""
        if all(s["kind"] == "pretrained" for s in self.sources.values()):
            return None
        return {k: v.clone() for k, v in self.state_dict().items()}


# ---------------------------------------------------------------------------------------------
# geo encoder


class SineLayer(nn.Module):
    """SIREN layer sin(w0 (W x + b)) with the SIREN initialisation (Sitzmann et al. 2020)."""

    def __init__(self, n_in: int, n_out: int, w0: float, first: bool = False) -> None:
        super().__init__()
        self.w0 = float(w0)
        self.linear = nn.Linear(n_in, n_out)
        bound = 1.0 / n_in if first else math.sqrt(6.0 / n_in) / self.w0
        with torch.no_grad():
            self.linear.weight.uniform_(-bound, bound)
            self.linear.bias.uniform_(-bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.w0 * self.linear(x))


class GeoEncoder(nn.Module):
    """Climplicit-style location encoder: a SIREN over (lon/180, lat/90, sin month, cos month)
    giving a ``geo_embed``-d embedding (Climplicit: 1024), then Linear -> ``geo_out``.

    Unknown months are encoded as (0, 0). Pretrained SIREN weights (``Settings.climplicit_path``, a
    torch state dict of :attr:`siren`) are loaded and frozen; without them the SIREN trains with the
    rest of the model.
    """

    N_IN = 4

    def __init__(self, config: TraitNetConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = [SineLayer(self.N_IN, config.geo_hidden, config.geo_w0, first=True)]
        for _ in range(config.geo_layers - 1):
            layers.append(SineLayer(config.geo_hidden, config.geo_hidden, 30.0))
        layers.append(nn.Linear(config.geo_hidden, config.geo_embed))
        self.siren = nn.Sequential(*layers)
        self.proj = nn.Linear(config.geo_embed, config.geo_out)
        self.pretrained = False

    @staticmethod
    def inputs(lon, lat, month=None) -> torch.Tensor:
        lon = torch.as_tensor(np.asarray(lon, np.float64), dtype=torch.float32)
        lat = torch.as_tensor(np.asarray(lat, np.float64), dtype=torch.float32)
        if month is None:
            m = torch.full_like(lon, float("nan"))
        else:
            m = torch.as_tensor(np.asarray(month, np.float64), dtype=torch.float32)
        ang = 2 * math.pi * (m - 1) / 12
        known = torch.isfinite(ang)
        s = torch.where(known, torch.sin(torch.nan_to_num(ang)), 0.0)
        c = torch.where(known, torch.cos(torch.nan_to_num(ang)), 0.0)
        return torch.stack([lon / 180.0, lat / 90.0, s, c], 1)

    def load_embedding(self, path: Path | str) -> None:
        p = Path(path)
        if not p.is_file():
            raise WeightsNotFoundError(
                f"Climplicit-style geo encoder weights not found: GEOFLORA_CLIMPLICIT_PATH (climplicit_path) = "
                f"{p} is not a file (a torch state dict of the SIREN); unset it to train the geo encoder "
                f"from scratch")
        state = torch.load(p, map_location="cpu", weights_only=True)
        try:
            self.siren.load_state_dict(state)
        except RuntimeError as exc:
            raise ValueError(f"{p} does not fit the geo encoder's SIREN ({exc})") from None
        self.siren.requires_grad_(False)
        self.pretrained = True

    def forward(self, geo: torch.Tensor) -> torch.Tensor:
        return self.proj(self.siren(geo))


# ---------------------------------------------------------------------------------------------
# trainable part


class ResidualBlock(nn.Module):
    def __init__(self, d: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.BatchNorm1d(d), nn.Linear(d, hidden), nn.LeakyReLU(), nn.Dropout(dropout),
                                   nn.Linear(hidden, d), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class TraitNet(nn.Module):
    """Everything after the frozen encoders: projections, geo encoder, fusion trunk and heads.

    ``forward(image [B, C, P], geo [B, 4], depth [B, C_d, P_d] | None) -> (mean [B, T], logvar [B, T])``
    in standardised log-trait units.
    """

    def __init__(self, config: TraitNetConfig, image_channels: int, depth_channels: int = 0) -> None:
        super().__init__()
        self.config = config
        self.image_proj = nn.Sequential(nn.Flatten(), nn.Linear(image_channels * config.image_pool, config.image_out))
        d_in = config.image_out
        self.depth_proj = None
        if config.use_depth:
            if depth_channels <= 0:
                raise ValueError("use_depth needs a depth encoder (depth_channels > 0)")
            self.depth_proj = nn.Sequential(nn.Flatten(),
                                            nn.Linear(depth_channels * config.depth_pool, config.depth_out))
            d_in += config.depth_out
        self.geo = GeoEncoder(config) if config.use_geo else None
        if self.geo is not None:
            d_in += config.geo_out
        self.norm = nn.LayerNorm(d_in, eps=1e-6)
        self.inp = nn.Linear(d_in, config.fusion_dim)
        self.blocks = nn.ModuleList(ResidualBlock(config.fusion_dim, config.block_hidden, config.dropout)
                                    for _ in range(config.n_blocks))
        self.mean_heads = nn.ModuleDict({t: nn.Linear(config.fusion_dim, 1) for t in config.traits})
        self.logvar_heads = nn.ModuleDict({t: nn.Linear(config.fusion_dim, 1) for t in config.traits})
        for h in self.logvar_heads.values():
            nn.init.normal_(h.weight, 0.0, 0.01)
            nn.init.zeros_(h.bias)
        self.register_buffer("laplace", torch.tensor([t in config.laplace_traits for t in config.traits]))

    def forward(self, image: torch.Tensor, geo: torch.Tensor | None = None,
                depth: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        parts = [self.image_proj(image)]
        if self.depth_proj is not None:
            if depth is None:
                raise ValueError("this model uses depth features: pass depth=")
            parts.append(self.depth_proj(depth))
        if self.geo is not None:
            if geo is None:
                raise ValueError("this model uses the geo encoder: pass geo=")
            parts.append(self.geo(geo))
        x = self.inp(self.norm(torch.cat(parts, 1)))
        for b in self.blocks:
            x = b(x)
        mean = torch.cat([self.mean_heads[t](x) for t in self.config.traits], 1)
        logvar = torch.cat([self.logvar_heads[t](x) for t in self.config.traits], 1)
        return mean, logvar.clamp(*LOGVAR_RANGE)

    def loss(self, y: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor,
             valid: torch.Tensor | None = None) -> torch.Tensor:
        """Per-trait NLL [T] (Laplace for ``laplace_traits``, Gaussian otherwise)."""
        return trait_nll(y, mean, logvar, self.laplace, valid)
