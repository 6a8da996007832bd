"""Adaptive (quadtree) habitat inference: where it is exact, what it costs, what it can miss."""

from __future__ import annotations

import numpy as np

from inference.habitat.infer import refine_classify


def _oracle(classes: np.ndarray, prob: np.ndarray):
    calls = []

    def evaluate(flat: np.ndarray):
        calls.append(flat.copy())
        return classes.ravel()[flat].astype(np.int16), prob.ravel()[flat].astype(np.float32)

    return evaluate, calls


def _voronoi(H: int, W: int, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pts = rng.uniform(0, [H, W], (n, 2))
    r, c = np.mgrid[0:H, 0:W]
    d = (r[..., None] - pts[:, 0]) ** 2 + (c[..., None] - pts[:, 1]) ** 2
    return d.argmin(-1)


def test_step_one_evaluates_every_cell_once():
    classes = _voronoi(37, 41, 6, 0)
    has = np.ones_like(classes, bool)
    has[5, 7] = False
    ev, calls = _oracle(classes, np.full(classes.shape, 0.5))
    idx, prob, _, stats = refine_classify(ev, has, 1)
    assert stats["evaluated"] == has.sum() and stats["filled"] == 0
    flat = np.concatenate(calls)
    assert len(np.unique(flat)) == len(flat)  # no cell twice
    assert idx[5, 7] == -1 and prob[5, 7] == 0
    assert np.array_equal(idx[has], classes[has])


def test_large_patches_are_exact_for_a_fraction_of_the_model_calls():
    H, W = 200, 240
    classes = _voronoi(H, W, 8, 1)
    r, c = np.mgrid[0:H, 0:W]
    prob = 0.3 + 0.001 * r + 0.0005 * c  # bilinear: interpolation between corners is exact
    ev, calls = _oracle(classes, prob)
    idx, p, _, stats = refine_classify(ev, np.ones((H, W), bool), 8)
    agree = (idx == classes).mean()
    assert agree > 0.995, agree
    assert stats["evaluated"] < 0.25 * H * W
    assert stats["evaluated"] + stats["filled"] == H * W
    flat = np.concatenate(calls)
    assert len(np.unique(flat)) == len(flat)  # never the same cell twice
    np.testing.assert_allclose(p, prob, atol=1e-5)


def test_boundaries_are_traced_at_full_resolution():
    # two classes split by a vertical line at column 101: every block it crosses has corners of both
    # classes, so it is refined down to single cells and the boundary comes out exact
    classes = np.zeros((64, 160), int)
    classes[:, 101:] = 1
    ev, _ = _oracle(classes, np.full(classes.shape, 0.9))
    idx, _, _, stats = refine_classify(ev, np.ones(classes.shape, bool), 16)
    assert np.array_equal(idx, classes)
    assert stats["evaluated"] < 0.2 * classes.size


def test_a_patch_smaller_than_a_block_touching_no_corner_is_missed():
    # the documented limit: a 3 x 3 patch strictly inside a block whose corners agree
    classes = np.zeros((33, 33), int)
    classes[10:13, 10:13] = 2
    ev, _ = _oracle(classes, np.full(classes.shape, 0.7))
    idx, _, _, _ = refine_classify(ev, np.ones(classes.shape, bool), 32)
    assert (idx[10:13, 10:13] == 0).all()
    idx, _, _, _ = refine_classify(ev, np.ones(classes.shape, bool), 4)  # a lattice through it finds it
    assert np.array_equal(idx, classes)


def test_cells_without_a_list_force_refinement_and_stay_empty():
    classes = np.ones((40, 40), int)
    has = np.ones((40, 40), bool)
    has[17:19, 3:30] = False  # a river of empty assemblages
    ev, _ = _oracle(classes, np.full(classes.shape, 0.8))
    idx, p, _, _ = refine_classify(ev, has, 8)
    assert (idx[~has] == -1).all() and (p[~has] == 0).all()
    assert (idx[has] == 1).all()


def test_single_row_grid_is_evaluated_cell_by_cell():
    classes = np.arange(9)[None, :] % 3
    ev, _ = _oracle(classes, np.full(classes.shape, 0.6))
    idx, _, _, stats = refine_classify(ev, np.ones(classes.shape, bool), 4)
    assert np.array_equal(idx, classes) and stats["evaluated"] == 9



def test_top_k_classes_are_interpolated_class_by_class_and_keep_the_winner_first():
    # Three classes with bilinear probabilities: interpolating each class between the corners is
    # exact where the top 2 of the four corners are the same pair of classes, and the winner of
    # a filled block stays first at every cell.
    H, W = 60, 80
    r, c = np.mgrid[0:H, 0:W].astype(np.float64)
    dense = np.stack([0.5 + 0.004 * r, 0.3 - 0.002 * r + 0.001 * c, 0.2 - 0.002 * r - 0.001 * c + 0.001 * W])
    dense /= dense.sum(0, keepdims=True)
    order = np.argsort(-dense, axis=0, kind="stable")[:2]  # [2, H, W]
    top_p = np.take_along_axis(dense, order, 0)
    calls = []

    def evaluate(flat):
        calls.append(len(flat))
        rr, cc = np.divmod(flat, W)
        return order[:, rr, cc].T.astype(np.int16), top_p[:, rr, cc].T.astype(np.float32)

    idx, prob, evaluated, stats = refine_classify(evaluate, np.ones((H, W), bool), 8)
    assert idx.shape == (H, W, 2) and prob.shape == (H, W, 2)
    assert stats["filled"] > 0 and evaluated.mean() < 0.5
    assert np.array_equal(idx[..., 0], order[0])  # the first class everywhere, evaluated or filled
    assert (prob[..., 0] >= prob[..., 1]).all()
    same_pair = np.array_equal(idx[..., 1], order[1])
    if same_pair:  # the second class only changes where the corners' second classes differ
        assert np.abs(prob - np.moveaxis(top_p, 0, -1)).max() < 1e-5
    else:
        ok = idx[..., 1] == order[1]
        assert ok.mean() > 0.9 and np.abs(prob[..., 0] - top_p[0]).max() < 1e-5


def test_top_k_suitability_of_a_metatile_matches_the_dense_softmax():
    import torch

    from inference.habitat.infer import classify_metatile
    from inference.habitat.plantbert import PlantBert, Vocab, bert_kwargs, build_classifier

    torch.manual_seed(0)
    vocab = Vocab(tuple(range(30)), tuple(f"species {i}" for i in range(30)))
    labels = ["R22", "R21", "R23", "Q11", "Q22"]
    kw = bert_kwargs("small", len(vocab), 12, len(labels))
    pb = PlantBert(build_classifier(kw), vocab, labels, 12, "small", kw)
    rng = np.random.default_rng(3)
    probs = rng.random((30, 6, 7)).astype(np.float32)
    probs[:, 0, 0] = 0.0  # a cell without an assemblage
    hm = classify_metatile(pb, probs, threshold=0.2, top_k=3)
    suit = hm.suitability()
    assert suit.shape == (5, 6, 7) and (suit[:, 0, 0] == 0).all() and hm.index[0, 0] == -1
    from inference.habitat.infer import metatile_tokens

    toks = metatile_tokens(probs, 12, 0.2)
    full = pb.predict_proba(toks[1:])  # every cell but the empty one, dense softmax
    got = suit.reshape(5, -1).T[1:]
    third = np.sort(full, 1)[:, -3][:, None]
    assert np.allclose(np.where(full >= third - 1e-6, full, 0.0), got, atol=1e-5)
    assert np.array_equal(hm.index.ravel()[1:], full.argmax(1))
    assert ((got > 0).sum(1) == 3).all()
