"""Input conventions and normalisation shared by training, per-point and meta-tile inference.

Sentinel-2 enters the model in the GLC24 uint8 convention (reflectance capped at 10,000, gamma
1/2.5, 0-255), whatever the source (GLC24 JPEGs, GLC25 GeoTIFFs, generated reflectance), then every
modality is standardised per channel with statistics computed on the training split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from inference.data.readers import glc25_to_glc24_uint8

MODALITIES = ("s2", "climate", "landsat")


def s2_to_model_units(s2: np.ndarray) -> np.ndarray:
    """uint16 reflectance x 10,000 -> GLC24 uint8; uint8 input is taken as GLC24 already."""
    if s2.dtype == np.uint8:
        return s2
    return glc25_to_glc24_uint8(s2)


@dataclass
class Normalizer:
    """Per-modality, per-channel mean and standard deviation."""

    mean: dict[str, np.ndarray]
    std: dict[str, np.ndarray]

    @classmethod
    def fit(cls, inputs: dict[str, np.ndarray], max_samples: int = 4096, seed: int = 0) -> Normalizer:
        rng = np.random.default_rng(seed)
        mean, std = {}, {}
        for name, arr in inputs.items():
            idx = rng.choice(len(arr), size=min(len(arr), max_samples), replace=False)
            sample = arr[idx]
            if name == "s2":
                sample = s2_to_model_units(sample)
            sample = sample.astype(np.float64)
            axes = (0,) + tuple(range(2, sample.ndim))
            mean[name] = sample.mean(axis=axes).astype(np.float32)
            std[name] = np.maximum(sample.std(axis=axes), 1e-6).astype(np.float32)
        return cls(mean, std)

    def apply(self, name: str, arr: np.ndarray) -> torch.Tensor:
        """[N, C, ...] raw array -> standardised float32 tensor."""
        if name == "s2":
            arr = s2_to_model_units(arr)
        shape = (1, -1) + (1,) * (arr.ndim - 2)
        out = (arr.astype(np.float32) - self.mean[name].reshape(shape)) / self.std[name].reshape(shape)
        return torch.from_numpy(np.ascontiguousarray(out))

    def to_dict(self) -> dict:
        return {"mean": {k: v.tolist() for k, v in self.mean.items()},
                "std": {k: v.tolist() for k, v in self.std.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> Normalizer:
        return cls({k: np.asarray(v, np.float32) for k, v in d["mean"].items()},
                   {k: np.asarray(v, np.float32) for k, v in d["std"].items()})
