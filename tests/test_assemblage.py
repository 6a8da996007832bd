"""The per-cell assemblage store: exact round trip, windows, atomic writes, clear errors, and the
pipeline's stores against the run's species and indicator layers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import torch

from inference.pipeline.assemblage import (
    AssemblageError,
    chunk_assemblages,
    read_assemblage,
    read_header,
    write_assemblage,
)


@pytest.fixture(scope="module")
def probs():
    rng = np.random.default_rng(0)
    S, H, W = 40, 73, 61  # chunks cut at the edges
    base = rng.beta(0.4, 3.0, (S, 1, 1))
    p = np.clip(base + rng.normal(0, 0.08, (S, H, W)), 0, 1).astype(np.float32)
    p[:, 10:14, 20:30] = 0.0  # cells with an empty assemblage
    return p


def _direct(p, t, r, c):
    sp = np.flatnonzero(p[:, r, c] >= t)
    return sp, np.rint(p[sp, r, c] * 250).astype(np.uint8)


def test_round_trip_is_exact_for_every_cell(tmp_path, probs):
    t = 0.2
    ids = np.arange(1000, 1000 + probs.shape[0])
    path = write_assemblage(tmp_path / "a.bin", chunk_assemblages(probs, t, 250.0, chunk=16), ids, "E4200N2800")
    a = read_assemblage(path)
    S, H, W = probs.shape
    assert a.shape == (H, W)
    np.testing.assert_array_equal(a.counts.reshape(H, W), (probs >= t).sum(0))
    for r in range(H):
        for c in range(W):
            sp, codes = _direct(probs, t, r, c)
            s = slice(a.offsets[r * W + c], a.offsets[r * W + c + 1])
            np.testing.assert_array_equal(a.species[s], sp)
            np.testing.assert_array_equal(a.codes[s], codes)
    # one cell in decreasing probability, as species ids
    got_ids, got_p = a.cell(5, 7)
    sp, codes = _direct(probs, t, 5, 7)
    order = np.argsort(-codes, kind="stable")
    np.testing.assert_array_equal(got_ids, ids[sp[order]])
    np.testing.assert_allclose(got_p, codes[order] / 250)
    head = read_header(path)
    assert head["tile"] == "E4200N2800" and head["threshold"] == t and head["species_ids"] == ids.tolist()
    assert not list(tmp_path.glob(".*.tmp"))  # written through a temporary file, renamed


def test_windows_read_only_their_cells(tmp_path, probs):
    t = 0.15
    path = write_assemblage(tmp_path / "a.bin", chunk_assemblages(torch.from_numpy(probs), t, 250.0, chunk=16),
                            np.arange(probs.shape[0]), "E0N0")
    full = read_assemblage(path)
    H, W = full.shape
    for r0, c0, r1, c1 in [(0, 0, 1, 1), (15, 15, 17, 33), (40, 3, 73, 61), (11, 19, 12, 31)]:
        win = read_assemblage(path, (r0, c0, r1, c1))
        assert win.shape == (r1 - r0, c1 - c0)
        for r in range(r0, r1):
            for c in range(c0, c1):
                i, j = r * W + c, (r - r0) * (c1 - c0) + (c - c0)
                np.testing.assert_array_equal(win.species[win.offsets[j]:win.offsets[j + 1]],
                                              full.species[full.offsets[i]:full.offsets[i + 1]])
                np.testing.assert_array_equal(win.codes[win.offsets[j]:win.offsets[j + 1]],
                                              full.codes[full.offsets[i]:full.offsets[i + 1]])
    with pytest.raises(ValueError, match="outside"):
        read_assemblage(path, (0, 0, H + 1, 5))


def test_bad_files_get_clear_errors(tmp_path, probs):
    with pytest.raises(AssemblageError, match="no assemblage store"):
        read_assemblage(tmp_path / "missing.bin")
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"GIF89a....")
    with pytest.raises(AssemblageError, match="not an assemblage store"):
        read_assemblage(bad)
    path = write_assemblage(tmp_path / "a.bin", chunk_assemblages(probs, 0.2, 250.0), np.arange(40), "E0N0")
    data = bytearray(path.read_bytes())
    data[-40:] = b"\x00" * 40  # damage the last chunk
    path.write_bytes(bytes(data))
    with pytest.raises(AssemblageError, match="corrupt"):
        read_assemblage(path)
    with pytest.raises(ValueError, match="species ids"):
        write_assemblage(tmp_path / "b.bin", chunk_assemblages(probs, 0.2, 250.0), np.arange(3), "E0N0")


def test_pipeline_stores_agree_with_the_species_and_richness_layers(computed):
    settings, sessions, run_id = computed
    from backend.db.models import Run

    with sessions() as session:
        t = session.get(Run, run_id).config["profile"]["threshold"]
    for manifest_path in (settings.data_dir / "runs" / run_id / "metatiles").glob("*/manifest.json"):
        folder = manifest_path.parent
        manifest = json.loads(manifest_path.read_text())
        assert manifest["files"]["assemblage.bin"] == (folder / "assemblage.bin").stat().st_size
        a = read_assemblage(folder / "assemblage.bin")
        ids = a.species_ids
        present = set(ids[np.unique(a.species)].tolist())
        assert present == set(manifest["species"])  # a species layer for exactly the species in some assemblage
        # richness = sum of the assemblage's probabilities (to the 1/250 quantisation of each)
        with rasterio.open(folder / "indicator.richness.tif") as src:
            richness = src.read(1).ravel()
        sums = np.add.reduceat(np.r_[a.probabilities(), 0], a.offsets[:-1]) * (a.counts > 0)
        assert np.abs(sums - richness).max() <= a.counts.max() / 500 + 1e-4
        # and a species layer holds the same code where the species is in the assemblage
        sid = manifest["species"][0]
        k = int(np.flatnonzero(ids == sid)[0])
        with rasterio.open(folder / "species" / f"{sid}.tif") as src:
            layer = src.read(1).ravel()
        cells = np.repeat(np.arange(len(a.counts)), a.counts)
        mine = a.species == k
        np.testing.assert_array_equal(layer[cells[mine]], a.codes[mine])
        outside = np.setdiff1d(np.arange(len(layer)), cells[mine])
        assert (layer[outside] <= t * 250 + 0.5).all()  # elsewhere below the threshold (to rounding)
