"""BotaCLIP: a frozen Earth-observation encoder + a light residual adapter aligned contrastively with
botanical releves (PA survey species lists); per-cell embeddings for downstream predictors and maps.

``model`` (encoders, adapter, loss), ``train`` (pairs, SSL of the demo encoder, contrastive training,
checkpoints), ``embed`` (meta-tile embeddings, PCA colours), ``evaluate`` (SDM with / without embeddings).
"""

from .model import BotaCLIP, BotaCLIPConfig, CellCNN, CellCNNConfig, load_frozen_encoder  # noqa: F401
