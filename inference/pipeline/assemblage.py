"""The per-cell assemblage store of a meta-tile: which species each 50 m cell holds, and how likely.

Probabilities of every species in every cell are too large to keep (11,255 species x 250,000 cells
per meta-tile); maps and reports need only each cell's *assemblage*: the species at or above the
run's conformal threshold, with their calibrated probability. This file keeps exactly that, cell by
cell, so an area report reads the cells it covers and nothing else.

Layout of ``assemblage.bin`` (little-endian; written to a temporary file, then renamed):

- ``b"GFASM1\\n"``, then a uint32 header length and a UTF-8 JSON header: ``tile``, ``rows``,
  ``cols``, ``chunk`` (cells per chunk edge), ``species_ids`` (the run's species order: entry k is
  species index k below), ``code_scale`` (probability = code / code_scale), ``threshold``, and
  ``chunks``: per chunk in row-major order ``[offset, nbytes]`` from the start of the file.
- Each chunk (``chunk`` x ``chunk`` cells, smaller at the right and bottom edges) is a zlib
  stream of three arrays: ``counts`` uint16 [cells] (assemblage size of each cell, row-major in the
  chunk), ``species`` uint16 [n] (species index, increasing within a cell, stored as the difference
  to the previous species of the same cell, the first as is), ``codes`` uint8 [n] (probability x
  ``code_scale``, rounded).

Increasing species order with differences makes neighbouring cells' byte streams alike, which is
what zlib compresses; a chunk is the unit of reading, so a small area decompresses little.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backend.core.atomic import atomic_open
from backend.core.errors import AssemblageError

MAGIC = b"GFASM1\n"
FILE_NAME = "assemblage.bin"
CHUNK = 50




@dataclass
class Assemblages:
    """The assemblages of a window of cells in CSR form: cell ``i`` (row-major in the window) holds
    ``species[offsets[i]:offsets[i + 1]]`` (indices into ``species_ids``) with ``codes`` there."""

    offsets: np.ndarray  # int64 [cells + 1]
    species: np.ndarray  # int32 [n]
    codes: np.ndarray  # uint8 [n]
    shape: tuple[int, int]
    species_ids: np.ndarray
    code_scale: float

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.offsets)

    def probabilities(self) -> np.ndarray:
        return self.codes.astype(np.float32) / self.code_scale

    def cell(self, row: int, col: int) -> tuple[np.ndarray, np.ndarray]:
        """Species ids and probabilities of one cell of the window, in decreasing probability."""
        i = row * self.shape[1] + col
        s = slice(self.offsets[i], self.offsets[i + 1])
        order = np.argsort(-self.codes[s], kind="stable")
        return self.species_ids[self.species[s][order]], self.codes[s][order] / self.code_scale


def _on_gpu(prob) -> bool:
    """Whether ``prob`` is a torch tensor on an accelerator (checked without importing torch)."""
    device = getattr(prob, "device", None)
    return type(prob).__module__.startswith("torch") and getattr(device, "type", "cpu") != "cpu"


def assemblage_arrays(prob, threshold: float, code_scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR of the assemblages of probabilities ``[S, H, W]`` (torch or numpy): per cell (row-major)
    the count, then the species indices (increasing) and their probability codes."""
    if _on_gpu(prob):  # select on the GPU, copy only the result
        import torch  # torch: only for probabilities already on a GPU; the API reads stores without it

        S, H, W = prob.shape
        cells = prob.permute(1, 2, 0).reshape(H * W, S)
        mask = cells >= threshold
        cell_idx, species = torch.nonzero(mask, as_tuple=True)
        codes = (cells[cell_idx, species] * code_scale).round_().clamp_(0, 255).to(torch.uint8)
        return (mask.sum(1).cpu().numpy().astype(np.int64), species.cpu().numpy().astype(np.int32),
                codes.cpu().numpy())
    p = np.asarray(prob)
    S, H, W = p.shape
    cells = np.ascontiguousarray(p.reshape(S, H * W).T)  # [cells, S]; numpy beats torch's CPU nonzero here
    mask = cells >= threshold
    _, species = np.nonzero(mask)  # row-major: cell, then increasing species
    codes = np.clip(np.rint(cells[mask] * code_scale), 0, 255).astype(np.uint8)
    return mask.sum(1).astype(np.int64), species.astype(np.int32), codes


def _encode_chunk(counts: np.ndarray, species: np.ndarray, codes: np.ndarray) -> bytes:
    delta = species.astype(np.int64).copy()
    if len(delta):
        delta[1:] -= species[:-1]
        starts = np.cumsum(counts)[:-1]
        starts = starts[starts < len(delta)]
        delta[starts] = species[starts]
        delta[0] = species[0]
    raw = counts.astype("<u2").tobytes() + delta.astype("<u2").tobytes() + codes.astype(np.uint8).tobytes()
    return zlib.compress(raw, 6)


def decode_chunk(blob: bytes, n_cells: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts, species indices and codes of one chunk's ``n_cells`` cells (raises on a corrupt chunk)."""
    raw = zlib.decompress(blob)
    counts = np.frombuffer(raw, "<u2", n_cells).astype(np.int64)
    n = int(counts.sum())
    if len(raw) != 2 * n_cells + 3 * n:
        raise AssemblageError("corrupt assemblage chunk (sizes do not match)")
    delta = np.frombuffer(raw, "<u2", n, offset=2 * n_cells).astype(np.int64)
    codes = np.frombuffer(raw, np.uint8, n, offset=2 * n_cells + 2 * n)
    # undo the differences within each cell: running sum minus the sum before the cell's start
    total = np.cumsum(delta)
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    base = np.where(starts > 0, total[np.maximum(starts - 1, 0)] if n else 0, 0)
    species = total - np.repeat(base, counts)
    return counts, species.astype(np.int32), codes


@dataclass
class AssemblageChunks:
    """A meta-tile's assemblages cut into chunks, ready to write (see :func:`chunk_assemblages`)."""

    rows: int
    cols: int
    chunk: int
    threshold: float
    code_scale: float
    parts: list  # per chunk, row-major: (counts, species, codes)

    @property
    def entries(self) -> int:
        return sum(len(part[1]) for part in self.parts)


def chunk_assemblages(prob, threshold: float, code_scale: float, chunk: int = CHUNK) -> AssemblageChunks:
    """The assemblages of probabilities ``[S, H, W]`` (numpy, or torch on any device), per chunk."""
    p = prob if _on_gpu(prob) else np.asarray(prob)
    S, H, W = p.shape
    if S > 65_535:
        raise ValueError(f"{S} species: the store indexes at most 65,535")
    parts = [assemblage_arrays(p[:, r0:r0 + chunk, c0:c0 + chunk], threshold, code_scale)
             for r0 in range(0, H, chunk) for c0 in range(0, W, chunk)]
    return AssemblageChunks(H, W, chunk, float(threshold), float(code_scale), parts)


def write_assemblage(path: Path, chunks: AssemblageChunks, species_ids, tile_id: str) -> Path:
    """Write a meta-tile's store atomically (temporary file, then rename); returns its path."""
    n_species = max((int(part[1].max(initial=-1)) for part in chunks.parts), default=-1) + 1
    if n_species > len(species_ids):
        raise ValueError(f"species index {n_species - 1} but only {len(species_ids)} species ids")
    blobs = [_encode_chunk(*part) for part in chunks.parts]
    header = {"tile": tile_id, "rows": chunks.rows, "cols": chunks.cols, "chunk": chunks.chunk,
              "code_scale": chunks.code_scale, "threshold": chunks.threshold,
              "species_ids": [int(s) for s in species_ids]}
    # chunk offsets count from the start of the file, after the header that lists them: reserve
    # room for the widest offsets, then pad the header to that length
    room = len(json.dumps({**header, "chunks": [[10 ** 12, 10 ** 12]] * len(blobs)}).encode())
    offset, entries = len(MAGIC) + 4 + room, []
    for b in blobs:
        entries.append([offset, len(b)])
        offset += len(b)
    head = json.dumps({**header, "chunks": entries}).encode()
    head += b" " * (room - len(head))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as f:
        f.write(MAGIC + struct.pack("<I", len(head)) + head)
        for b in blobs:
            f.write(b)
    return path


def read_header(path: Path) -> dict:
    path = Path(path)
    try:
        with open(path, "rb") as f:
            magic = f.read(len(MAGIC))
            if magic != MAGIC:
                raise AssemblageError(f"{path} is not an assemblage store")
            (n,) = struct.unpack("<I", f.read(4))
            return json.loads(f.read(n))
    except FileNotFoundError:
        raise AssemblageError(f"no assemblage store at {path}") from None
    except (struct.error, json.JSONDecodeError, UnicodeDecodeError):
        raise AssemblageError(f"{path}: truncated or corrupt header") from None


class StoreReader:
    """Chunks of one meta-tile's assemblage store, with its header read once."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        head = read_header(self.path)
        self.rows, self.cols, self.chunk = head["rows"], head["cols"], head["chunk"]
        self.per_row = -(-self.cols // self.chunk)
        self.entries = head["chunks"]
        self.species_ids = np.asarray(head["species_ids"], np.int64)
        self.code_scale = float(head["code_scale"])
        self.threshold = float(head["threshold"])

    def chunk_shape(self, cr: int, cc: int) -> tuple[int, int]:
        return min(self.chunk, self.rows - cr * self.chunk), min(self.chunk, self.cols - cc * self.chunk)

    def read(self, cr: int, cc: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(counts [h, w], species [n], codes [n]) of chunk (cr, cc), cells row-major."""
        off, nbytes = self.entries[cr * self.per_row + cc]
        with open(self.path, "rb") as f:
            f.seek(off)
            blob = f.read(nbytes)
        h, w = self.chunk_shape(cr, cc)
        try:
            counts, species, codes = decode_chunk(blob, h * w)
        except (zlib.error, struct.error, ValueError):
            raise AssemblageError(f"{self.path}: corrupt chunk {cr},{cc}") from None
        return counts.reshape(h, w), species, codes


def read_assemblage(path: Path, window: tuple[int, int, int, int] | None = None) -> Assemblages:
    """The assemblages of the cells ``(row0, col0, row1, col1)`` (end exclusive; default: all), read
    chunk by chunk (only the chunks the window touches are decompressed)."""
    store = StoreReader(path)
    H, W, ch = store.rows, store.cols, store.chunk
    r0, c0, r1, c1 = window or (0, 0, H, W)
    if not (0 <= r0 < r1 <= H and 0 <= c0 < c1 <= W):
        raise ValueError(f"window {(r0, c0, r1, c1)} is outside the {H} x {W} store")
    wh, ww = r1 - r0, c1 - c0
    counts = np.zeros((wh, ww), np.int64)
    parts: dict[tuple[int, int], tuple] = {}
    for cr in range(r0 // ch, -(-r1 // ch)):
        for cc in range(c0 // ch, -(-c1 // ch)):
            cnt, sp, co = store.read(cr, cc)
            h, w = cnt.shape
            parts[(cr, cc)] = (cnt, np.r_[0, np.cumsum(cnt)], sp, co, h, w)
            # the chunk's part of the window
            y0, x0 = max(r0, cr * ch), max(c0, cc * ch)
            y1, x1 = min(r1, cr * ch + h), min(c1, cc * ch + w)
            counts[y0 - r0:y1 - r0, x0 - c0:x1 - c0] = cnt[y0 - cr * ch:y1 - cr * ch, x0 - cc * ch:x1 - cc * ch]
    offsets = np.r_[0, np.cumsum(counts.ravel())]
    species = np.empty(offsets[-1], np.int32)
    codes = np.empty(offsets[-1], np.uint8)
    # gather each window cell's entries from its chunk (vectorised per chunk)
    for (cr, cc), (cnt, coff, sp, co, h, w) in parts.items():
        y0, x0 = max(r0, cr * ch), max(c0, cc * ch)
        y1, x1 = min(r1, cr * ch + h), min(c1, cc * ch + w)
        yy, xx = np.mgrid[y0:y1, x0:x1]
        src_cell = ((yy - cr * ch) * w + (xx - cc * ch)).ravel()
        dst_cell = ((yy - r0) * ww + (xx - c0)).ravel()
        n = cnt.ravel()[src_cell]
        if not n.sum():
            continue
        src = np.repeat(coff[src_cell] - np.r_[0, np.cumsum(n)[:-1]], n) + np.arange(n.sum())
        dst = np.repeat(offsets[dst_cell] - np.r_[0, np.cumsum(n)[:-1]], n) + np.arange(n.sum())
        species[dst] = sp[src]
        codes[dst] = co[src]
    return Assemblages(offsets, species, codes, (wh, ww), store.species_ids, store.code_scale)
