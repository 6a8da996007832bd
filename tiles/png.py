"""A small, fast PNG writer for rendered map images (palette, RGB + transparent colour, RGBA).

Pillow's encoder filters every row adaptively and takes 10-20 ms for a 256 x 256 RGBA tile on
the development machine; map tiles are mostly flat colour, so unfiltered rows through zlib at
level 1 are several times faster for a similar size, and a palette image (one byte per pixel,
exact, since every colour comes from a 256-entry colour map) is faster still.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
COMPRESS_LEVEL = 1


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _idat(pixels: np.ndarray) -> bytes:
    """zlib stream of the rows of ``pixels`` [rows, cols(, channels)], each with filter type 0."""
    height = pixels.shape[0]
    rows = np.zeros((height, pixels[0].size + 1), np.uint8)
    rows[:, 1:] = pixels.reshape(height, -1)
    return zlib.compress(rows.tobytes(), COMPRESS_LEVEL)


def _png(width: int, height: int, color_type: int, chunks: list[tuple[bytes, bytes]], pixels: np.ndarray) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    body = [_chunk(b"IHDR", ihdr), *(_chunk(k, d) for k, d in chunks), _chunk(b"IDAT", _idat(pixels))]
    return SIGNATURE + b"".join(body) + _chunk(b"IEND", b"")


def encode_palette(index: np.ndarray, palette: np.ndarray) -> bytes:
    """Palette PNG: ``index`` uint8 [rows, cols], ``palette`` uint8 [n <= 256, 4] RGBA."""
    height, width = index.shape
    chunks = [(b"PLTE", np.ascontiguousarray(palette[:, :3]).tobytes())]
    alpha = palette[:, 3]
    if (alpha != 255).any():
        last = int(np.flatnonzero(alpha != 255).max()) + 1  # tRNS may stop after the last non-opaque entry
        chunks.append((b"tRNS", alpha[:last].tobytes()))
    return _png(width, height, 3, chunks, index)


def encode_rgb(rgb: np.ndarray, transparent: tuple[int, int, int] | None = None) -> bytes:
    """RGB PNG from uint8 [rows, cols, 3]; ``transparent`` is the one colour drawn transparent."""
    height, width, _ = rgb.shape
    chunks = [] if transparent is None else [(b"tRNS", struct.pack(">HHH", *transparent))]
    return _png(width, height, 2, chunks, rgb)


def encode_rgba(rgba: np.ndarray) -> bytes:
    """RGBA PNG from uint8 [rows, cols, 4]."""
    height, width, _ = rgba.shape
    return _png(width, height, 6, [], rgba)
