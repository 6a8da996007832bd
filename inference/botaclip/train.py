"""Train BotaCLIP on a region's presence-absence surveys: (S2 patch at the plot, species list) pairs.

Steps: (1) the frozen encoder -- ``eo_encoder_path`` if set, otherwise the demo ``CellCNN``, briefly
self-supervised (SimCLR on random S2 patches of the region; ``ssl_steps=0`` keeps it random-init) and
then frozen; (2) its features are computed once for every TRAIN patch (``n_views`` dihedral views) and
every CAL / TEST patch -- the encoder never runs in the training loop, it cannot change; (3) the
adapter, the releve encoder and the temperature are trained with symmetric InfoNCE + the
regulariser, selected on CAL retrieval; (4) PCA colours are fitted on random cells of the whole
region. The splits are the deep-SDM's (``region_samples`` with the same seed: 10 km blocks).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from inference.sdm.dataset import region_samples
from inference.sdm.preprocess import Normalizer
from inference.splits import CAL, TEST, TRAIN
from inference.training import BestState, resolve_device, seed_everything, write_report

from .embed import fit_pca_colours
from .model import (
    BotaCLIP,
    BotaCLIPConfig,
    CellCNN,
    CellCNNConfig,
    dihedral,
    encode,
    freeze,
    lists_to_bag,
    load_frozen_encoder,
    model_device,
    save_botaclip,
    save_cell_cnn,
)

# ---------------------------------------------------------------------------------------------
# data

def survey_pairs(region, seed: int = 0, patch_size: int = 80) -> dict:
    """PA surveys with at least one species: positions, split (the deep-SDM's), species index lists,
    S2 patches uint16 [N, 4, P, P], labels [N, S] and the true probabilities."""
    data = region_samples(region, seed=seed, use_po=True, with_inputs=False)
    pa = data.subset(~data.is_po)
    pa = pa.subset(pa.labels.any(1))
    lists = [np.flatnonzero(row) for row in pa.labels]
    s2 = np.concatenate([region.extract_s2(pa.x[i:i + 2048], pa.y[i:i + 2048], size=patch_size)
                         for i in range(0, len(pa), 2048)]) if len(pa) else np.zeros((0, 4, patch_size, patch_size),
                                                                                      np.uint16)
    return {"x": pa.x, "y": pa.y, "split": pa.split, "lists": lists, "s2": s2, "labels": pa.labels,
            "p_true": pa.p_true, "species_ids": pa.species_ids}


def random_cells(region, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Centres of ``n`` random 50 m cells of the region (EPSG:3035)."""
    rng = np.random.default_rng(seed)
    xmin, ymin, xmax, ymax = region.meta["bounds"]
    nc, nr = int(round((xmax - xmin) / 50)), int(round((ymax - ymin) / 50))
    c, r = rng.integers(0, nc, n), rng.integers(0, nr, n)
    return xmin + (c + 0.5) * 50.0, ymin + (r + 0.5) * 50.0


# ---------------------------------------------------------------------------------------------
# retrieval

def retrieval(img: torch.Tensor, txt: torch.Tensor, lists: list, ks=(1, 5, 10)) -> dict:
    """Top-k retrieval between unit image and releve embeddings of the same N surveys, both ways.

    Surveys with identical species lists have identical releve embeddings, so retrieval runs over the
    U distinct releves: image -> releve ranks the U distinct lists for each image (chance k / U);
    releve -> image ranks the N images for each distinct list, a hit being any of the m images
    recorded with that list in the top k (chance 1 - C(N - m, k) / C(N, k))."""
    n = len(lists)
    keys = np.array([",".join(map(str, np.asarray(lst).tolist())) for lst in lists])
    _, first, cls = np.unique(keys, return_index=True, return_inverse=True)
    cls = torch.from_numpy(cls.ravel())
    u = len(first)
    sim = (img @ txt[torch.from_numpy(first)].T).float()  # [N images, U lists]
    true = sim[torch.arange(n), cls]
    rank_i2t = (sim > true[:, None]).sum(1).numpy()
    member = cls[None, :] == torch.arange(u)[:, None]  # [U, N]
    simT = sim.T  # [U, N]
    best = torch.where(member, simT, torch.tensor(-torch.inf)).max(1).values
    rank_t2i = (torch.where(member, torch.tensor(-torch.inf), simT) > best[:, None]).sum(1).numpy()
    m = member.sum(1).numpy()
    out = {"n": n, "distinct_releves": u}
    for k in ks:
        out[f"image_to_releve@{k}"] = float((rank_i2t < k).mean())
        out[f"image_to_releve_chance@{k}"] = min(k, u) / u
        out[f"releve_to_image@{k}"] = float((rank_t2i < k).mean())
        t = np.arange(min(k, n))
        out[f"releve_to_image_chance@{k}"] = float(np.mean([1 - np.prod(np.maximum(n - mi - t, 0) / (n - t))
                                                           for mi in m]))
    if 10 in ks:
        out["mean@10"] = 0.5 * (out["image_to_releve@10"] + out["releve_to_image@10"])
        out["chance_mean@10"] = 0.5 * (out["image_to_releve_chance@10"] + out["releve_to_image_chance@10"])
    return out


# ---------------------------------------------------------------------------------------------
# self-supervised pretraining of the demo encoder

def _ssl_view(patches: np.ndarray, P: int, norm: Normalizer, rng: np.random.Generator) -> torch.Tensor:
    n, _, S, _ = patches.shape
    out = np.empty((n, patches.shape[1], P, P), patches.dtype)
    for i in range(n):
        r, c = rng.integers(0, S - P + 1, 2)
        out[i] = dihedral(patches[i, :, r:r + P, c:c + P], int(rng.integers(8)))
    x = norm.apply("s2", out)
    gain = 1 + 0.1 * torch.from_numpy(rng.standard_normal((n, x.shape[1], 1, 1)).astype(np.float32))
    shift = 0.1 * torch.from_numpy(rng.standard_normal((n, x.shape[1], 1, 1)).astype(np.float32))
    noise = 0.05 * torch.from_numpy(rng.standard_normal(x.shape).astype(np.float32))
    return x * gain + shift + noise


def pretrain_cell_cnn(region, encoder: CellCNN, norm: Normalizer, steps: int, n_patches: int = 4000,
                      batch: int = 128, seed: int = 0, temperature: float = 0.2, log=print) -> dict:
    """SimCLR on random S2 patches of the region (crops shifted up to 1 cell, dihedral views, band gain /
    offset jitter, noise), on the device the encoder is on (the views are drawn on the CPU). Leaves the
    encoder in eval mode (to be frozen)."""
    t0 = time.perf_counter()
    rng = seed_everything(seed)
    device = model_device(encoder)
    P = encoder.patch_size
    x, y = random_cells(region, n_patches, seed + 1)
    patches = region.extract_s2(x, y, size=P + 10)
    head = torch.nn.Sequential(torch.nn.Linear(encoder.out_features, 128), torch.nn.ReLU(),
                               torch.nn.Linear(128, 64)).to(device)
    params = list(encoder.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1))
    encoder.train()
    losses = []
    for step in range(steps):
        idx = rng.choice(len(patches), size=min(batch, len(patches)), replace=False)
        v1, v2 = _ssl_view(patches[idx], P, norm, rng), _ssl_view(patches[idx], P, norm, rng)
        z = F.normalize(head(encoder(torch.cat([v1, v2]).to(device))), dim=-1)
        sim = z @ z.T / temperature
        sim.fill_diagonal_(-torch.inf)
        n = len(idx)
        target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(device)
        loss = F.cross_entropy(sim, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if (step + 1) % 50 == 0 or step == 0:
            log(f"  ssl step {step + 1}/{steps}: NT-Xent {np.mean(losses[-50:]):.3f}")
    encoder.eval()
    return {"steps": steps, "seconds": round(time.perf_counter() - t0, 1),
            "loss_first": losses[0] if losses else None,
            "loss_last50": float(np.mean(losses[-50:])) if losses else None}


# ---------------------------------------------------------------------------------------------
# PCA colours


# ---------------------------------------------------------------------------------------------
# training

def build_encoder(config: BotaCLIPConfig, encoder_path: Path | None):
    if encoder_path is not None:
        return load_frozen_encoder(encoder_path, config.eo_patch_size), {"kind": "path", "path": str(encoder_path)}
    return CellCNN(CellCNNConfig.from_dict(config.cnn)), {"kind": "cell-cnn"}


def train_botaclip(region, out: Path, config: BotaCLIPConfig = BotaCLIPConfig(), encoder_path: Path | None = None,
                   encoder=None, pairs: dict | None = None, log=print, device: str = "auto") -> dict:
    """Train and save ``out`` (checkpoint) and ``out.with_suffix('.json')`` (report); returns the report.

    ``encoder``: an already frozen encoder to use as is (tests); otherwise ``encoder_path`` or the demo
    CellCNN (self-supervised for ``config.ssl_steps`` steps, saved beside ``out`` as ``eo_encoder.pt``).
    ``device``: where the SSL pre-training, the frozen features and the training run
    (``resolve_device``: auto is CUDA when present; settings ``device``). The trained model, the
    given encoder with it, ends on the CPU.
    """
    out = Path(out)
    t_start = time.perf_counter()
    rng = seed_everything(config.seed)
    dev = torch.device(resolve_device(device))
    info: dict = {}
    if encoder is None:
        encoder, info = build_encoder(config, encoder_path)
    else:
        info = {"kind": "given"}
    encoder.to(dev)
    P = int(encoder.patch_size)
    if pairs is None:
        log("reading PA surveys and their S2 patches...")
        pairs = survey_pairs(region, seed=config.seed, patch_size=P)
    split = pairs["split"]
    tr, ca, te = (np.flatnonzero(split == s) for s in (TRAIN, CAL, TEST))
    if len(tr) < 8 or len(ca) < 2:
        raise ValueError(f"too few surveys: {len(tr)} train, {len(ca)} calibration")
    off = (pairs["s2"].shape[-1] - P) // 2
    if getattr(encoder, "normalizer", None) is not None:  # a saved demo encoder keeps its input scaling
        norm = Normalizer.from_dict(encoder.normalizer)
    else:
        norm = Normalizer.fit({"s2": pairs["s2"][tr][..., off:off + P, off:off + P]}, seed=config.seed)
    report: dict = {"n_train": int(len(tr)), "n_cal": int(len(ca)), "n_test": int(len(te)),
                    "mean_species_per_survey": float(np.mean([len(lst) for lst in pairs["lists"]]))}

    if info.get("kind") == "cell-cnn":
        if config.ssl_steps > 0:
            log(f"self-supervised pretraining of the demo encoder ({config.ssl_steps} SimCLR steps)...")
            report["ssl"] = pretrain_cell_cnn(region, encoder, norm, config.ssl_steps, config.ssl_patches,
                                              config.ssl_batch, config.seed, log=log)
        else:
            report["ssl"] = {"steps": 0, "note": "random-init frozen encoder"}
        freeze(encoder.cpu())  # saved from the CPU
        save_cell_cnn(encoder, out.with_name("eo_encoder.pt"), {"ssl": report["ssl"], "normalizer": norm.to_dict()})
        encoder.to(dev)
    encoder = freeze(encoder)
    enc_state = {k: v.to("cpu", copy=True) for k, v in encoder.state_dict().items()}

    t0 = time.perf_counter()
    views = max(1, min(8, config.n_views))
    h_tr = torch.stack([encode(encoder, norm, pairs["s2"][tr], view=v) for v in range(views)])  # [V, N, F]
    h_ca = encode(encoder, norm, pairs["s2"][ca])
    h_te = encode(encoder, norm, pairs["s2"][te]) if len(te) else None
    report["encode_seconds"] = round(time.perf_counter() - t0, 1)
    log(f"frozen features: {views} views x {len(tr)} train, {len(ca)} cal, {len(te)} test patches "
        f"in {report['encode_seconds']} s")

    model = BotaCLIP(encoder, len(pairs["species_ids"]), config)
    model.fit_projection(h_tr[0].cpu())  # on the CPU, like the rest of the new model; then all on the device
    model.to(dev)
    lists = pairs["lists"]
    lists_tr = [lists[i] for i in tr]
    lists_ca = [lists[i] for i in ca]
    ids_ca, off_ca = lists_to_bag(lists_ca)

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(tr) / config.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs * steps_per_epoch)

    @torch.no_grad()
    def evaluate_split(h, lst, ids, offs) -> dict:
        model.eval()
        e, h0 = model.adapt(h)
        res = retrieval(F.normalize(e, dim=-1).cpu(), model.embed_lists(ids.to(dev), offs.to(dev)).cpu(), lst)
        res["cos_to_frozen"] = float(F.cosine_similarity(e, h0, dim=-1).mean())
        return res

    history = []
    # the frozen encoder is neither copied nor restored (it may be a large pretrained model)
    best = BestState(config.patience, keep=lambda name: not name.startswith("encoder."))
    t0 = time.perf_counter()
    for epoch in range(config.epochs):
        model.train()
        order = rng.permutation(len(tr))
        tot, parts = 0.0, {"infonce": 0.0, "reg": 0.0}
        nb = 0
        for b in range(steps_per_epoch):
            idx = order[b * config.batch_size:(b + 1) * config.batch_size]
            if len(idx) < 2:
                continue
            v = torch.from_numpy(rng.integers(0, views, len(idx)))
            h = h_tr[v.to(dev), torch.from_numpy(idx).to(dev)]
            ids, offs = lists_to_bag([lists_tr[i] for i in idx], config.species_dropout, rng)
            loss, p = model.loss(h, ids.to(dev), offs.to(dev))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss.detach())
            parts["infonce"] += p["infonce"]
            parts["reg"] += p["reg"]
            nb += 1
        cal = evaluate_split(h_ca, lists_ca, ids_ca, off_ca)
        row = {"epoch": epoch + 1, "loss": tot / max(nb, 1), "infonce": parts["infonce"] / max(nb, 1),
               "reg": parts["reg"] / max(nb, 1), "temperature": float(1 / model.logit_scale.detach().exp()),
               "cal_mean@10": cal["mean@10"], "cal_image_to_releve@10": cal["image_to_releve@10"],
               "cal_cos_to_frozen": cal["cos_to_frozen"]}
        history.append(row)
        if epoch == 0 or (epoch + 1) % 20 == 0:
            log(f"epoch {epoch + 1}: loss {row['loss']:.4f} (InfoNCE {row['infonce']:.4f}, reg {row['reg']:.4f})  "
                f"CAL R@10 {cal['mean@10']:.3f} (chance {cal['chance_mean@10']:.3f})  "
                f"cos(e, h0) {cal['cos_to_frozen']:.3f}")
        best.update(cal["mean@10"], model, epoch + 1)
        if best.stop:
            break
    best.restore(model)
    model.eval()
    report["train_seconds"] = round(time.perf_counter() - t0, 1)
    report["epochs"] = len(history)
    report["best_epoch"] = best.epoch
    report["history"] = history
    report["calibration"] = evaluate_split(h_ca, lists_ca, ids_ca, off_ca)
    if h_te is not None:
        ids_te, off_te = lists_to_bag([lists[i] for i in te])
        report["test"] = evaluate_split(h_te, [lists[i] for i in te], ids_te, off_te)
    unchanged = all(torch.equal(enc_state[k], v.cpu()) for k, v in encoder.state_dict().items())
    report["frozen_encoder_unchanged"] = bool(unchanged)

    # region-wide PCA colours of the embedding
    t0 = time.perf_counter()
    xs, ys = random_cells(region, config.pca_cells, config.seed + 2)
    with torch.no_grad():
        emb = model.embed_features(encode(encoder, norm, region.extract_s2(xs, ys, size=P))).cpu().numpy()
    model.cpu()  # saved, and returned, on the CPU
    pca = fit_pca_colours(emb)
    report["pca_seconds"] = round(time.perf_counter() - t0, 1)
    report["total_seconds"] = round(time.perf_counter() - t_start, 1)
    report["encoder"] = describe_encoder(encoder, info)
    report["config"] = config.to_dict()
    save_botaclip(model, norm, pairs["species_ids"], pca, report, out)
    write_report(out.with_suffix(".json"), report)
    model.norm, model.pca_colours, model.species_ids = norm, pca, np.asarray(pairs["species_ids"])
    return report


def describe_encoder(encoder, info: dict) -> dict:
    d = {"class": type(encoder).__name__, "patch_size": int(encoder.patch_size),
         "out_features": int(encoder.out_features),
         "parameters": int(sum(p.numel() for p in encoder.parameters()))}
    if isinstance(encoder, CellCNN):
        d["config"] = encoder.config.to_dict()
    if info.get("path"):
        d["path"] = info["path"]
    return d


# ---------------------------------------------------------------------------------------------
# checkpoints



