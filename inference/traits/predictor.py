"""The trained PlantTraitNet and its checkpoint: the inputs of the trainable part (:class:`Features`),
the label standardisation (:class:`LabelScaler`), the cleaning loop's screen (:class:`Screen`),
:class:`TraitModel` (what predicts traits from photos), and :func:`save_traits` / :func:`load_traits`
(``geoflora train traits`` writes the file, everything else reads it through here)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from inference import checkpoint

from .data import PhotoSet, load_images, photo_features
from .model import FrozenEncoders, GeoEncoder, TraitNet, TraitNetConfig

CHECKPOINT_FORMAT = "geoflora-traits"
CHECKPOINT_VERSION = 1


@dataclass
class Features:
    """Inputs of the trainable part for every photo: pooled encoder tokens and geo inputs."""

    image: torch.Tensor            # [N, C, P]
    geo: torch.Tensor              # [N, 4]
    depth: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.image)

    @classmethod
    def build(cls, feats: dict[str, torch.Tensor], photos: PhotoSet) -> Features:
        return cls(image=feats["image"].float(), geo=GeoEncoder.inputs(photos.lon, photos.lat, photos.month),
                   depth=feats["depth"].float() if "depth" in feats else None)

    def take(self, idx, device: torch.device | str | None = None) -> dict:
        """The rows ``idx`` of every input, moved to ``device`` when given (the features stay where
        they are; one batch at a time goes to the device)."""
        idx = torch.as_tensor(np.asarray(idx), dtype=torch.long)
        out = {"image": self.image[idx], "geo": self.geo[idx],
               "depth": None if self.depth is None else self.depth[idx]}
        if device is not None:
            out = {k: None if v is None else v.to(device) for k, v in out.items()}
        return out


@dataclass
class LabelScaler:
    """Standardisation of log traits: z = (log - mean) / sd, from the training photos' log medians."""

    mean: np.ndarray
    sd: np.ndarray

    @classmethod
    def fit(cls, log_median: np.ndarray) -> LabelScaler:
        mean = np.nanmean(log_median, 0)
        sd = np.nanstd(log_median, 0)
        if not np.all(np.isfinite(mean)):
            raise ValueError("a trait has no label in the training photos")
        return cls(mean, np.where(sd > 1e-6, sd, 1.0))

    def to_z(self, log: np.ndarray) -> np.ndarray:
        return (log - self.mean) / self.sd

    def to_log(self, z_mean: np.ndarray, z_var: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return z_mean * self.sd + self.mean, z_var * self.sd ** 2

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "sd": self.sd.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> LabelScaler:
        return cls(np.asarray(d["mean"], np.float64), np.asarray(d["sd"], np.float64))


@torch.no_grad()
def predict_z(net: TraitNet, feats: Features, idx: np.ndarray | None = None,
              batch: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Predicted mean and variance [N, T] in standardised units (NumPy, whatever device ``net`` is on:
    each batch goes to it)."""
    net.eval()
    device = next(net.parameters()).device
    idx = np.arange(len(feats)) if idx is None else np.asarray(idx)
    means, vars_ = [], []
    for i in range(0, len(idx), batch):
        b = feats.take(idx[i:i + batch], device)
        m, lv = net(b["image"], b["geo"], b["depth"])
        means.append(m.cpu().numpy())
        vars_.append(lv.exp().cpu().numpy())
    T = len(net.config.traits)
    if not means:
        return np.zeros((0, T)), np.zeros((0, T))
    return np.concatenate(means).astype(np.float64), np.concatenate(vars_).astype(np.float64)


class Screen:
    """The step-1 model and its joint-uncertainty threshold, applied to any photo: ``keep`` is True
    where the early model's joint uncertainty (sum of standardised predicted variances) is below the
    threshold that dropped the top 5 % of the training photos. A model trained on cleaned photos has
    never seen photos like the dropped ones (walls, roads, sky) and extrapolates on them, so the same
    screen removes them from the reference set and from the photos a map aggregates."""

    def __init__(self, net: TraitNet, threshold: float) -> None:
        self.net = net.eval()
        self.threshold = float(threshold)

    def joint_uncertainty(self, feats: Features, idx: np.ndarray | None = None) -> np.ndarray:
        return predict_z(self.net, feats, idx)[1].sum(1)

    def keep(self, feats: Features, idx: np.ndarray | None = None) -> np.ndarray:
        return self.joint_uncertainty(feats, idx) < self.threshold


class TraitModel:
    """A trained PlantTraitNet: frozen encoders + trainable part + label scaler (+ the cleaning
    loop's screen, when trained with cleaning)."""

    def __init__(self, encoders: FrozenEncoders, net: TraitNet, scaler: LabelScaler, screen: Screen | None = None,
                 meta: dict | None = None) -> None:
        self.encoders = encoders
        self.net = net.eval()
        self.scaler = scaler
        self.screen = screen
        self.meta = meta or {}

    @property
    def traits(self) -> tuple[str, ...]:
        return self.net.config.traits

    def predict_features(self, feats: Features, screen: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Predicted log-trait means and variances [N, T] (natural log of the trait's unit).

        With ``screen`` (and a model trained with cleaning) photos that fail the step-1 screen are
        NaN: the model was not trained on photos like them.
        """
        mean, var = self.scaler.to_log(*predict_z(self.net, feats))
        if screen and self.screen is not None:
            bad = ~self.screen.keep(feats)
            mean[bad] = np.nan
            var[bad] = np.nan
        return mean, var

    def predict_photos(self, photos: PhotoSet, cache_dir: Path | None = None,
                       screen: bool = True) -> tuple[np.ndarray, np.ndarray]:
        feats = Features.build(photo_features(self.encoders, photos, cache_dir), photos)
        return self.predict_features(feats, screen)

    def predict_images(self, images: np.ndarray, lon, lat, month=None,
                       screen: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """From uint8 RGB photos [N, H, W, 3] taken at (lon, lat) (WGS84) in ``month`` (1-12, optional)."""
        feats = Features.build(self.encoders.encode(images), _Loc(lon, lat, month))
        return self.predict_features(feats, screen)

    def predict_files(self, paths, lon, lat, month=None, screen: bool = True) -> tuple[np.ndarray, np.ndarray]:
        return self.predict_images(load_images(paths), lon, lat, month, screen)


@dataclass
class _Loc:
    lon: np.ndarray
    lat: np.ndarray
    month: np.ndarray | None


def save_traits(out: Path, encoders: FrozenEncoders, net: TraitNet, scaler: LabelScaler, mcfg: TraitNetConfig,
                cfg, report: dict, climplicit_path: Path | None = None,
                record: dict | None = None, screen: Screen | None = None) -> None:
    """A trained PlantTraitNet (``cfg``: its training configuration, a dataclass) for :func:`load_traits`."""
    cleaning = None
    if record is not None and "step1" in record:
        cleaning = {"joint_uncertainty_threshold": record["step1"]["joint_uncertainty_threshold"],
                    "residual_threshold": record["step2"]["residual_threshold"],
                    "turning_point": record["step2"]["turning_point"]}
    checkpoint.save_checkpoint(out, CHECKPOINT_FORMAT, CHECKPOINT_VERSION, {
        "model_config": mcfg.to_dict(), "train_config": asdict(cfg),
        "encoders": {"sources": encoders.sources, "state_dict": encoders.random_state()},
        "geo_pretrained": None if climplicit_path is None else str(climplicit_path),
        "state_dict": net.state_dict(), "scaler": scaler.to_dict(), "cleaning": cleaning,
        "screen": None if screen is None else {"state_dict": screen.net.state_dict(), "threshold": screen.threshold},
        "report": report,
    })


def load_traits(path: Path, dinov2_path: Path | None = None, depth_path: Path | None = None) -> TraitModel:
    """A trained PlantTraitNet. Pretrained encoders are read from the given local paths, or from the
    paths recorded at training time; a missing folder raises :class:`WeightsNotFoundError`."""
    ck = checkpoint.load_checkpoint(path, CHECKPOINT_FORMAT, (CHECKPOINT_VERSION,), "traits")
    mcfg = TraitNetConfig.from_dict(ck["model_config"])
    src = ck["encoders"]["sources"]
    img_path = dinov2_path or (src["image"]["path"] if src["image"]["kind"] == "pretrained" else None)
    dep = src.get("depth")
    dep_path = depth_path or (dep["path"] if dep and dep["kind"] == "pretrained" else None)
    encoders = FrozenEncoders(mcfg, img_path, dep_path, state_dict=ck["encoders"]["state_dict"])

    def make(state: dict) -> TraitNet:
        n = TraitNet(mcfg, encoders.image_channels, encoders.depth_channels)
        n.load_state_dict(state)
        if n.geo is not None and ck.get("geo_pretrained"):
            n.geo.pretrained = True
        return n.eval()

    screen = None
    if ck.get("screen"):
        screen = Screen(make(ck["screen"]["state_dict"]), ck["screen"]["threshold"])
    return TraitModel(encoders, make(ck["state_dict"]), LabelScaler.from_dict(ck["scaler"]), screen, ck)
