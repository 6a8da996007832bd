"""The virtual flora: species, their niches, their traits, and the true presence probability.

A species' logit of presence in a survey plot of a 50 m cell is

    b0 + sum_k -(z_k - mu_k)^2 / (2 sd_k^2)   (Gaussian response on climate, terrain, soil)
       + sum_j beta_j g_j                      (roads, towns, water, forest edges, hedgerows)
       + alpha[habitat]                        (affinity to the cell's EUNIS type)

Expanding the squares makes this linear in the features ``[1, z, z^2, g, onehot(habitat)]``, so the
truth for all species is one matrix product (``design_matrix`` @ ``weights``) and never needs more
memory than one chunk of species. Species belong to ecological guilds (forest herbs, trees, hedge
and edge shrubs, dry / mesic / wet grassland, arable weeds, ruderals, wetland, heath, rock,
riparian) that set their habitat affinities, their growth form and their traits, as floras and
vegetation surveys describe them; no niche is shaped around a model.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.special import expit

from .. import eunis
from .common import rng_for
from .habitats import HABITAT_CODES

PREDICTORS = ("bio1", "bio12", "slope", "heatload", "wetness", "soil_ph",
              "dist_road", "dist_urban", "dist_water", "dist_edge", "hedge_density")
# continuous predictors -> (centre, scale) giving z; fixed constants, not region statistics
Z_VARS = {"bio1": (8.0, 2.0), "bio12": (1000.0, 300.0), "slope": (8.0, 8.0), "heatload": (0.0, 0.5),
          "wetness": (0.5, 0.25), "soil_ph": (6.0, 1.0)}
# landscape-structure predictors -> (distance scale m), turned into proximities exp(-d / scale)
G_VARS = {"dist_road": 150.0, "dist_urban": 300.0, "dist_water": 100.0, "dist_edge": 60.0, "hedge_density": None}
K, J, H = len(Z_VARS), len(G_VARS), len(HABITAT_CODES)
N_FEATURES = 1 + 2 * K + J + H
TRAITS = ("Height", "LeafArea", "SLA", "Leaf_N")
TRAIT_UNITS = {"Height": "m", "LeafArea": "mm2", "SLA": "mm2 mg-1", "Leaf_N": "mg g-1"}
GROWTH_FORMS = ("tree", "shrub", "herb", "grass", "fern")
PFT = {"tree": "tree", "shrub": "shrub", "herb": "herb", "grass": "grass", "fern": "herb"}

# guild -> (share, {level-2 EUNIS group: affinity}, growth-form probabilities, {g var: beta}, {z var: shift})
GUILDS: dict[str, tuple] = {
    "forest_herb": (0.15, {"T1": 2.0, "T3": 1.2, "T4": 0.8, "R5": 0.5},
                    {"herb": 0.7, "grass": 0.15, "fern": 0.15}, {"dist_edge": -0.3}, {}),
    "broadleaf_tree": (0.03, {"T1": 3.0, "T4": 1.5, "T3": 0.5, "R5": 0.0, "S3": 0.5, "S9": 0.5, "J1": -1.0,
                              "V6": -1.0, "V2": -1.0, "V4": 0.0}, {"tree": 1.0}, {"hedge_density": 1.0, "dist_edge": 0.3}, {}),
    "conifer_tree": (0.01, {"T3": 3.0, "T4": 1.5, "T1": 0.5, "Q1": -0.5}, {"tree": 1.0}, {}, {"bio1": -0.8}),
    "edge_shrub": (0.08, {"S3": 2.0, "R5": 1.5, "T4": 1.5, "T1": 0.5, "V2": 0.0, "S9": 1.0},
                   {"shrub": 0.8, "herb": 0.2}, {"dist_edge": 1.0, "hedge_density": 2.0}, {}),
    "dry_grassland": (0.09, {"R1": 2.5, "R2": 0.5, "S3": 0.0, "U2": 0.0, "U3": 0.0, "V3": -1.0},
                      {"herb": 0.65, "grass": 0.35}, {}, {"wetness": -1.0, "heatload": 1.0, "soil_ph": 0.5}),
    "mesic_grassland": (0.15, {"R2": 2.0, "V3": 1.2, "R3": 0.8, "R5": 0.3, "V1": -1.0, "V2": -0.5},
                        {"herb": 0.65, "grass": 0.35}, {}, {}),
    "wet_grassland": (0.07, {"R3": 2.5, "Q5": 1.0, "Q2": 1.0, "Q4": 1.0, "R2": 0.0},
                      {"herb": 0.6, "grass": 0.4}, {"dist_water": 0.5}, {"wetness": 1.2}),
    "arable_weed": (0.07, {"V1": 2.5, "V3": 0.0, "V2": -0.5, "V5": 0.5},
                    {"herb": 0.9, "grass": 0.1}, {"dist_road": 0.3}, {"slope": -0.5}),
    "ruderal": (0.10, {"J1": 1.5, "V2": 1.5, "V3": 1.0, "V1": 0.5, "T4": 0.5, "V6": 0.5},
                {"herb": 0.85, "grass": 0.1, "shrub": 0.05}, {"dist_road": 1.5, "dist_urban": 1.5}, {}),
    "wetland": (0.07, {"Q1": 2.0, "Q2": 2.2, "Q4": 2.2, "Q5": 2.5, "C1": 0.5, "C2": 0.5, "S9": 1.0},
                {"herb": 0.45, "grass": 0.5, "fern": 0.05}, {"dist_water": 0.8}, {"wetness": 1.5}),
    "heath": (0.04, {"S4": 2.5, "R1": 0.5, "Q1": 1.0, "T3": 0.3}, {"shrub": 0.5, "herb": 0.25, "grass": 0.25},
              {}, {"soil_ph": -1.5}),
    "rock": (0.04, {"U2": 2.5, "U3": 2.5, "R1": 0.8}, {"herb": 0.7, "fern": 0.2, "grass": 0.1}, {}, {"slope": 1.5}),
    "riparian": (0.05, {"S9": 2.0, "T1": 0.8, "Q5": 1.0, "C2": 1.0, "R3": 0.8},
                 {"herb": 0.6, "shrub": 0.2, "tree": 0.2}, {"dist_water": 2.0}, {"wetness": 0.8}),
}
GUILD_NAMES = tuple(GUILDS)

# log-trait means by growth form: Height (m), LeafArea (mm2), SLA (mm2/mg), Leaf_N (mg/g) (TRY-like)
_TRAIT_MU = {
    "tree": np.log([20.0, 2500.0, 14.0, 21.0]),
    "shrub": np.log([2.5, 800.0, 13.0, 19.0]),
    "herb": np.log([0.4, 700.0, 24.0, 25.0]),
    "grass": np.log([0.5, 300.0, 21.0, 21.0]),
    "fern": np.log([0.6, 3000.0, 25.0, 22.0]),
}
_CONIFER_MU = np.log([25.0, 40.0, 5.0, 13.0])
_TRAIT_SD_BETWEEN = np.array([0.45, 0.9, 0.3, 0.22])
_TRAIT_CORR = np.array([[1.0, 0.3, -0.1, 0.0],
                        [0.3, 1.0, 0.1, 0.1],
                        [-0.1, 0.1, 1.0, 0.6],
                        [0.0, 0.1, 0.6, 1.0]])
_TRAIT_SD_WITHIN = np.array([0.3, 0.4, 0.2, 0.15])  # intraspecific sd of log traits
_GUILD_TRAIT_SHIFT = {"ruderal": [0, 0.1, 0.15, 0.15], "arable_weed": [0, 0, 0.15, 0.15],
                      "heath": [0, -0.8, -0.25, -0.2], "dry_grassland": [-0.2, -0.3, -0.2, -0.1],
                      "wetland": [0.1, 0.3, 0.05, 0.05]}

_STEMS = {  # stem -> (growth form, family)
    "quercus": ("tree", "Fagaceae"), "fagus": ("tree", "Fagaceae"), "acer": ("tree", "Sapindaceae"),
    "fraxinus": ("tree", "Oleaceae"), "tilia": ("tree", "Malvaceae"), "ulmus": ("tree", "Ulmaceae"),
    "betula": ("tree", "Betulaceae"), "alnus": ("tree", "Betulaceae"), "carpinus": ("tree", "Betulaceae"),
    "salix": ("tree", "Salicaceae"), "populus": ("tree", "Salicaceae"), "sorbus": ("tree", "Rosaceae"),
    "picea": ("conifer", "Pinaceae"), "abies": ("conifer", "Pinaceae"), "pinus": ("conifer", "Pinaceae"),
    "larix": ("conifer", "Pinaceae"), "taxus": ("conifer", "Taxaceae"),
    "rosa": ("shrub", "Rosaceae"), "rubus": ("shrub", "Rosaceae"), "crataegus": ("shrub", "Rosaceae"),
    "corylus": ("shrub", "Betulaceae"), "sambucus": ("shrub", "Viburnaceae"), "cornus": ("shrub", "Cornaceae"),
    "lonicera": ("shrub", "Caprifoliaceae"), "vaccinium": ("shrub", "Ericaceae"), "calluna": ("shrub", "Ericaceae"),
    "ligustrum": ("shrub", "Oleaceae"), "euonymus": ("shrub", "Celastraceae"), "genista": ("shrub", "Fabaceae"),
    "ranunculus": ("herb", "Ranunculaceae"), "anemone": ("herb", "Ranunculaceae"), "trifolium": ("herb", "Fabaceae"),
    "lathyrus": ("herb", "Fabaceae"), "vicia": ("herb", "Fabaceae"), "galium": ("herb", "Rubiaceae"),
    "veronica": ("herb", "Plantaginaceae"), "plantago": ("herb", "Plantaginaceae"), "viola": ("herb", "Violaceae"),
    "geranium": ("herb", "Geraniaceae"), "potentilla": ("herb", "Rosaceae"), "alchemilla": ("herb", "Rosaceae"),
    "campanula": ("herb", "Campanulaceae"), "centaurea": ("herb", "Asteraceae"), "hieracium": ("herb", "Asteraceae"),
    "achillea": ("herb", "Asteraceae"), "senecio": ("herb", "Asteraceae"), "cirsium": ("herb", "Asteraceae"),
    "silene": ("herb", "Caryophyllaceae"), "stellaria": ("herb", "Caryophyllaceae"), "urtica": ("herb", "Urticaceae"),
    "primula": ("herb", "Primulaceae"), "orchis": ("herb", "Orchidaceae"), "mentha": ("herb", "Lamiaceae"),
    "lamium": ("herb", "Lamiaceae"), "thymus": ("herb", "Lamiaceae"), "rumex": ("herb", "Polygonaceae"),
    "epilobium": ("herb", "Onagraceae"), "euphorbia": ("herb", "Euphorbiaceae"), "hypericum": ("herb", "Hypericaceae"),
    "sedum": ("herb", "Crassulaceae"), "saxifraga": ("herb", "Saxifragaceae"), "heracleum": ("herb", "Apiaceae"),
    "papaver": ("herb", "Papaveraceae"), "cardamine": ("herb", "Brassicaceae"), "drosera": ("herb", "Droseraceae"),
    "carex": ("grass", "Cyperaceae"), "eriophorum": ("grass", "Cyperaceae"), "poa": ("grass", "Poaceae"),
    "festuca": ("grass", "Poaceae"), "agrostis": ("grass", "Poaceae"), "bromus": ("grass", "Poaceae"),
    "deschampsia": ("grass", "Poaceae"), "molinia": ("grass", "Poaceae"), "luzula": ("grass", "Juncaceae"),
    "juncus": ("grass", "Juncaceae"), "dryopteris": ("fern", "Dryopteridaceae"), "athyrium": ("fern", "Athyriaceae"),
    "polypodium": ("fern", "Polypodiaceae"), "asplenium": ("fern", "Aspleniaceae"), "blechnum": ("fern", "Blechnaceae"),
}
_EPITHETS = ("sylvatica", "montana", "pratensis", "palustris", "arvensis", "alpestris", "vulgaris", "minor",
             "major", "nemoralis", "rupestris", "aquatica", "hirsuta", "glabra", "virtualis", "ficta",
             "simulata", "digitalis", "nova", "borealis", "australis", "occidentalis", "orientalis", "media",
             "elegans", "gracilis", "robusta", "umbrosa", "aprica", "calcicola", "silicicola", "riparia",
             "campestris", "collina", "ruderalis", "segetalis", "sepium", "dumetorum", "uliginosa", "turfosa",
             "saxatilis", "petraea", "fontana", "lacustris", "fluviatilis", "nitida", "opaca", "pallida",
             "rubra", "alba", "lutea", "caerulea", "viridis", "aurea", "obscura", "lanata", "spinosa",
             "repens", "erecta", "scandens", "nana", "gigantea", "tenuis", "crassa", "latifolia",
             "angustifolia", "rotundifolia", "longifolia", "parviflora", "grandiflora", "multiflora",
             "odorata", "communis", "rara", "synthetica", "imaginaria", "artificialis", "numerica")
_GENUS_SUFFIXES = ("", "ella", "opsis", "anthus", "ina", "odes")
IUCN = ("LC", "NT", "VU", "EN", "CR", "DD")


def _genus_name(stem: str, variant: int) -> str:
    root = stem if variant == 0 else stem.rstrip("aeiouys").rstrip("aeiou")
    return "Virtu" + root + _GENUS_SUFFIXES[variant]


def make_species(n_species: int, seed: int) -> dict[str, np.ndarray]:
    """Species table (columns as arrays) and niche parameters, before intercept calibration."""
    rng = rng_for(seed, "flora")
    S = n_species
    shares = np.array([g[0] for g in GUILDS.values()])
    guild = rng.choice(len(GUILDS), size=S, p=shares / shares.sum())
    gf = np.empty(S, dtype=object)
    for gi, (_name, (_, _, forms, _, _)) in enumerate(GUILDS.items()):
        sel = np.flatnonzero(guild == gi)
        keys = list(forms)
        p = np.array([forms[k] for k in keys])
        gf[sel] = np.array(keys, dtype=object)[rng.choice(len(keys), size=sel.size, p=p / p.sum())]
    conifer = (guild == GUILD_NAMES.index("conifer_tree"))

    # --- names: genus per growth form (Zipf-sized genera), unique binomials
    stems_by_form: dict[str, list[str]] = {}
    for stem, (form, _) in _STEMS.items():
        stems_by_form.setdefault(form, []).append(stem)
    used: dict[str, set] = {}
    names, genera, families = [], [], []
    for i in range(S):
        form = "conifer" if conifer[i] else gf[i]
        stems = stems_by_form[form]
        while True:
            w = 1.0 / np.arange(1, len(stems) + 1) ** 0.8
            stem = stems[rng.choice(len(stems), p=w / w.sum())]
            variant = 0
            while len(used.get(_genus_name(stem, variant), ())) >= len(_EPITHETS) and variant < len(_GENUS_SUFFIXES) - 1:
                variant += 1
            genus = _genus_name(stem, variant)
            taken = used.setdefault(genus, set())
            free = [e for e in _EPITHETS if e not in taken]
            if free:
                break
        ep = free[rng.integers(len(free))]
        taken.add(ep)
        names.append(f"{genus} {ep}")
        genera.append(genus)
        families.append("Virtu" + _STEMS[stem][1].lower())

    # --- niches
    Kv = list(Z_VARS)
    use_p = np.array([0.9, 0.5, 0.3, 0.4, 0.7, 0.8])
    use = rng.uniform(0, 1, (S, K)) < use_p
    breadth = np.exp(rng.normal(0, 0.3, S))
    endemic = rng.uniform(0, 1, S) < 0.04
    breadth[endemic] *= 0.6
    shift = np.zeros((S, K))
    beta = np.zeros((S, J))
    groups = {}
    for i, c in enumerate(HABITAT_CODES):
        groups.setdefault(eunis.at_level(c, 2), []).append(i)
    alpha = np.full((S, H), -3.0)
    for gi, (_name, (_, aff, _, gbeta, zshift)) in enumerate(GUILDS.items()):
        sel = guild == gi
        for g2, v in aff.items():
            for hi in groups.get(g2, []):
                alpha[sel, hi] = v
        for var, v in zshift.items():
            shift[sel, Kv.index(var)] = v
        for var, v in gbeta.items():
            beta[sel, list(G_VARS).index(var)] = v
    alpha += rng.normal(0, 0.4, (S, H))
    # diagnostic species: a strong preference for one or two level-3 types of their formation
    for s in range(S):
        good = np.flatnonzero(alpha[s] > 1.0)
        if good.size:
            for hi in rng.choice(good, size=min(good.size, 1 + rng.integers(2)), replace=False):
                alpha[s, hi] += rng.uniform(0.8, 2.0)
    alpha = alpha / np.sqrt(breadth)[:, None]
    aquatic = np.isin(guild, [GUILD_NAMES.index("wetland"), GUILD_NAMES.index("riparian")])
    for c in ("C1.3", "C2.3"):
        alpha[~aquatic, HABITAT_CODES.index(c)] = -5.0
    beta = beta * np.exp(rng.normal(0, 0.3, (S, J))) + rng.normal(0, 0.15, (S, J))
    mu = shift + rng.normal(0, 1.0, (S, K))
    sd = np.exp(rng.normal(0.1, 0.35, (S, K))) * breadth[:, None]

    # --- prevalence targets, status flags
    med = min(0.03, 9.0 / S)
    target = np.clip(np.exp(rng.normal(np.log(med), 1.2, S)), 3e-4, 0.5)
    rank = np.argsort(np.argsort(target)) / max(S - 1, 1)       # 0 = rarest
    p_threat = 0.04 + 0.4 * (1 - rank) ** 3 + 0.2 * endemic
    u = rng.uniform(0, 1, S)
    iucn = np.full(S, "LC", dtype=object)
    thr = u < p_threat
    iucn[thr] = rng.choice(["NT", "VU", "EN", "CR"], size=int(thr.sum()), p=[0.4, 0.3, 0.2, 0.1])
    iucn[(~thr) & (rng.uniform(0, 1, S) < 0.06)] = "DD"
    eu_dir = rng.uniform(0, 1, S) < (0.015 + 0.12 * np.isin(iucn, ["VU", "EN", "CR"]) + 0.05 * endemic)
    invasive = (np.isin(guild, [GUILD_NAMES.index(g) for g in ("ruderal", "riparian", "arable_weed")])
                & (rng.uniform(0, 1, S) < 0.15) & ~endemic)
    iucn[invasive] = "LC"
    eu_dir &= ~invasive
    tree = gf == "tree"
    woody = tree | (gf == "shrub")
    detect = np.exp(rng.normal(0, 0.6, S)) * np.where(woody, 1.5, 1.0)  # showy / large species get recorded

    # --- traits: species means of log traits (correlated), intraspecific sd
    L = np.linalg.cholesky(_TRAIT_CORR)
    eps = rng.standard_normal((S, 4)) @ L.T * _TRAIT_SD_BETWEEN
    tmu = np.stack([_TRAIT_MU[f] for f in gf]) + eps
    tmu[conifer] = _CONIFER_MU + eps[conifer] * 0.5
    for gname, sh in _GUILD_TRAIT_SHIFT.items():
        tmu[guild == GUILD_NAMES.index(gname)] += sh
    # keep species means inside the ranges TRY reports for European plants
    tmu = np.clip(tmu, np.log([0.02, 1.5, 2.5, 6.0]), np.log([45.0, 50_000.0, 70.0, 55.0]))
    tsd = _TRAIT_SD_WITHIN * np.exp(rng.normal(0, 0.15, (S, 4)))

    return {
        "id": np.arange(1, S + 1), "name": np.array(names, dtype=object), "genus": np.array(genera, dtype=object),
        "family": np.array(families, dtype=object), "guild": np.array(GUILD_NAMES, dtype=object)[guild],
        "growth_form": gf, "pft": np.array([PFT[f] for f in gf], dtype=object), "conifer": conifer,
        "iucn": iucn, "eu_directive": eu_dir, "invasive": invasive, "woody": woody, "tree": tree,
        "endemic": endemic, "target_prevalence": target, "detectability": detect,
        "mu": mu.astype(np.float32), "sd": sd.astype(np.float32), "use": use, "beta": beta.astype(np.float32),
        "alpha": alpha.astype(np.float32), "trait_logmean": tmu.astype(np.float32), "trait_logsd": tsd.astype(np.float32),
    }


def weights(sp: dict, intercept: np.ndarray | None = None) -> np.ndarray:
    """Niche parameters -> weight matrix [N_FEATURES, S] acting on ``design_matrix`` rows."""
    use = sp["use"]
    inv = np.where(use, 1.0 / sp["sd"].astype(np.float64) ** 2, 0.0)
    mu = sp["mu"].astype(np.float64)
    S = mu.shape[0]
    W = np.zeros((N_FEATURES, S))
    W[0] = -0.5 * (inv * mu * mu).sum(1) + (0.0 if intercept is None else intercept)
    W[1:1 + K] = (inv * mu).T
    W[1 + K:1 + 2 * K] = (-0.5 * inv).T
    W[1 + 2 * K:1 + 2 * K + J] = sp["beta"].T
    W[1 + 2 * K + J:] = sp["alpha"].T
    return W.astype(np.float32)


def design_matrix(pred: np.ndarray, habitat: np.ndarray) -> np.ndarray:
    """Features [n, N_FEATURES] from predictors [len(PREDICTORS), n] and habitat indices [n] (255 = none)."""
    n = pred.shape[1]
    F = np.zeros((n, N_FEATURES), np.float32)
    F[:, 0] = 1.0
    for k, (var, (c, s)) in enumerate(Z_VARS.items()):
        z = (pred[PREDICTORS.index(var)] - c) / s
        F[:, 1 + k] = z
        F[:, 1 + K + k] = z * z
    for j, (var, scale) in enumerate(G_VARS.items()):
        v = pred[PREDICTORS.index(var)]
        F[:, 1 + 2 * K + j] = v if scale is None else np.exp(-np.abs(v) / scale)
    hab = habitat.astype(np.int64)
    ok = hab < H
    F[np.flatnonzero(ok), 1 + 2 * K + J + hab[ok]] = 1.0
    return F


def probability(F: np.ndarray, W: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """sigmoid(W^T F^T): [S, n] float32 (torch matmul, uses every core)."""
    with torch.no_grad():
        r = torch.from_numpy(np.ascontiguousarray(W.T)) @ torch.from_numpy(np.ascontiguousarray(F)).T
        torch.sigmoid_(r)
    if out is not None:
        out[...] = r.numpy()
        return out
    return r.numpy()


def calibrate_intercepts(sp: dict, F_sample: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """Intercepts b0 so that each species' mean probability over ``F_sample`` hits its target."""
    W = weights(sp)
    S = W.shape[1]
    b = np.zeros(S, np.float64)
    target = sp["target_prevalence"]
    for s0 in range(0, S, chunk):
        sl = slice(s0, min(S, s0 + chunk))
        rest = F_sample @ W[:, sl]                               # [n, s] float32
        t = target[sl].astype(np.float32)
        # start where the rare-species limit mean(p) ~ exp(b) mean(exp(rest)) is met, then
        # Newton on log mean(p) - log t (fast for rare and common species alike)
        top = rest.max(0)
        bb = (np.log(t) - top - np.log(np.exp(rest - top).mean(0))).astype(np.float32)
        act = np.arange(bb.size)
        for _ in range(50):
            r = rest[:, act]
            p = expit(bb[act] + r)
            mp = p.mean(0) + 1e-12
            g = np.log(mp) - np.log(t[act])
            dg = (p * (1 - p)).mean(0) / mp + 1e-9
            bb[act] -= np.clip(g / dg, -3.0, 3.0)
            act = act[np.abs(g) > 1e-4]
            if act.size == 0:
                break
        b[sl] = np.clip(bb, -25, 15)
    return b


def trait_summary(sp: dict) -> dict[str, np.ndarray]:
    """Per species and trait: median, sd, lower and upper bound (2.5 / 97.5 %) of the lognormal."""
    out = {}
    mu, s = sp["trait_logmean"].astype(np.float64), sp["trait_logsd"].astype(np.float64)
    for t, name in enumerate(TRAITS):
        out[f"{name}_median"] = np.exp(mu[:, t])
        out[f"{name}_sd"] = np.exp(mu[:, t] + s[:, t] ** 2 / 2) * np.sqrt(np.exp(s[:, t] ** 2) - 1)
        out[f"{name}_lowerbound"] = np.exp(mu[:, t] - 1.96 * s[:, t])
        out[f"{name}_upperbound"] = np.exp(mu[:, t] + 1.96 * s[:, t])
    return out
