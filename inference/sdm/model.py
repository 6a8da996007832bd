"""Deep-SDM: the GeoPlant "ResNet-6" multimodal ensemble.

One encoder per modality — Sentinel-2 patch [C, P, P], climate cube [4, 19, 12], Landsat cube
[6, 4, 21] — each conv3x3(C->64)+BN+ReLU, conv3x3(64->128)+BN+ReLU, maxpool 2,
conv3x3(128->256)+BN+ReLU, conv3x3(256->512)+BN+ReLU, maxpool 2, global average pool; the pooled
features are concatenated into one linear layer over all species (logits; sigmoid for
probabilities). Every shape is a constructor argument.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from inference.checkpoint import load_checkpoint, save_checkpoint
from inference.sdm.preprocess import Normalizer


def _block(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class ResNet6Encoder(nn.Module):
    """The GeoPlant ResNet-6 encoder (no residual connections despite the name)."""

    def __init__(self, in_channels: int, widths: tuple[int, int, int, int] = (64, 128, 256, 512),
                 ceil_mode: bool = True) -> None:
        super().__init__()
        w1, w2, w3, w4 = widths
        self.ceil_mode = ceil_mode
        self.stage1 = nn.Sequential(*_block(in_channels, w1), *_block(w1, w2))
        self.stage2 = nn.Sequential(*_block(w2, w3), *_block(w3, w4))
        self.out_features = w4

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """Everything before the global pooling: [N, C, H, W] -> [N, w4, H/4, W/4]."""
        x = F.max_pool2d(self.stage1(x), 2, ceil_mode=self.ceil_mode)
        return F.max_pool2d(self.stage2(x), 2, ceil_mode=self.ceil_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.feature_map(x).mean(dim=(2, 3))


@dataclass(frozen=True)
class SDMConfig:
    n_species: int
    s2_channels: int = 4
    patch_size: int = 128
    climate_shape: tuple[int, int, int] = (4, 19, 12)
    landsat_shape: tuple[int, int, int] = (6, 4, 21)
    widths: tuple[int, int, int, int] = (64, 128, 256, 512)
    extra_features: int = 0  # e.g. BotaCLIP embeddings appended to the ensemble
    modalities: tuple[str, ...] = field(default=("s2", "climate", "landsat"))
    # max pooling keeps the odd last row / column (GeoFlora's training); the GeoPlant notebooks drop
    # it (False): the two differ on the 19 x 12 climate and 4 x 21 Landsat cubes, not on even patches
    pool_ceil_mode: bool = True

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> SDMConfig:
        d = dict(d)
        for k in ("climate_shape", "landsat_shape", "widths", "modalities"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)


PAPER = dict(patch_size=128, climate_shape=(4, 19, 12), landsat_shape=(6, 4, 21), widths=(64, 128, 256, 512))
DEMO = dict(patch_size=64, climate_shape=(4, 19, 12), landsat_shape=(6, 4, 21), widths=(8, 16, 32, 32))


class MultimodalSDM(nn.Module):
    """Three ResNet-6 encoders concatenated into one linear layer over ``n_species`` (logits)."""

    def __init__(self, config: SDMConfig) -> None:
        super().__init__()
        self.config = config
        enc = {}
        if "s2" in config.modalities:
            enc["s2"] = ResNet6Encoder(config.s2_channels, config.widths, config.pool_ceil_mode)
        if "climate" in config.modalities:
            enc["climate"] = ResNet6Encoder(config.climate_shape[0], config.widths, config.pool_ceil_mode)
        if "landsat" in config.modalities:
            enc["landsat"] = ResNet6Encoder(config.landsat_shape[0], config.widths, config.pool_ceil_mode)
        if not enc:
            raise ValueError("an SDM needs at least one modality")
        self.encoders = nn.ModuleDict(enc)
        n_feat = sum(e.out_features for e in enc.values()) + config.extra_features
        self.head = nn.Linear(n_feat, config.n_species)

    def features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        parts = [self.encoders[name](batch[name]) for name in self.encoders]
        if self.config.extra_features:
            parts.append(batch["extra"])
        return torch.cat(parts, dim=1)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(self.features(batch))


# ---------------------------------------------------------------------------------------------
# checkpoints (written by `geoflora train sdm`)

CHECKPOINT_FORMAT = "geoflora-sdm"
CHECKPOINT_VERSION = 1


def load_sdm(path: Path, map_location: str = "cpu") -> tuple[MultimodalSDM, Normalizer, dict]:
    """A trained SDM, its normalisation and its checkpoint metadata (species ids, thresholds...)."""
    ck = load_checkpoint(path, CHECKPOINT_FORMAT, (CHECKPOINT_VERSION,), "sdm", map_location)
    model = MultimodalSDM(SDMConfig.from_dict(ck["model_config"]))
    model.load_state_dict(ck["state_dict"])
    model.eval()
    return model, Normalizer.from_dict(ck["normalizer"]), ck


def save_sdm(path: Path, model: MultimodalSDM, norm: Normalizer, species_ids, thresholds: dict, report: dict,
             train_config: dict) -> Path:
    """A trained SDM with what :func:`load_sdm` and the cascade need (species ids, thresholds)."""
    return save_checkpoint(path, CHECKPOINT_FORMAT, CHECKPOINT_VERSION, {
        "model_config": model.config.to_dict(), "train_config": train_config,
        "species_ids": [int(i) for i in species_ids], "normalizer": norm.to_dict(),
        "state_dict": model.state_dict(), "thresholds": thresholds, "report": report,
    })
