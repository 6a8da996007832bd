"""Colour maps and the legends that describe them (the same numbers drive tiles and legends)."""

from __future__ import annotations

import colorsys
import zlib

from rio_tiler.colormap import cmap as _default_cmap

# Categorical colour tables GeoFlora adds to rio-tiler's named colour maps (TiTiler serves them by
# name: ``colormap_name=iucn``). Keys are the pixel values; values missing from a table render
# transparent.
CATEGORICAL: dict[str, dict[int, tuple[int, int, int, int]]] = {
    # IUCN Red List categories by rank: 0 none assessed, 1 LC, 2 NT, 3 VU, 4 EN, 5 CR
    "iucn": {0: (200, 200, 200, 255), 1: (96, 198, 89, 255), 2: (204, 226, 38, 255), 3: (249, 232, 20, 255),
             4: (252, 127, 63, 255), 5: (216, 30, 5, 255)},
}

# Species presence: uint8 probability codes (p x 250) at or above the run's threshold code drawn
# green, the rest transparent. One map per possible threshold code (``presence-038`` ...).
PROBABILITY_CODE_SCALE = 250
PRESENCE_COLOR = (0, 128, 64, 230)
PRESENCE: dict[str, dict[int, tuple[int, int, int, int]]] = {
    f"presence-{t:03d}": {v: (PRESENCE_COLOR if t <= v <= PROBABILITY_CODE_SCALE else (0, 0, 0, 0)) for v in range(256)}
    for t in range(PROBABILITY_CODE_SCALE + 1)
}

COLORMAPS = _default_cmap.register({**CATEGORICAL, **PRESENCE})
_cmap = COLORMAPS


def hex_color(rgba: tuple[int, ...]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgba[:3])


def continuous_legend(colormap: str, vmin: float, vmax: float, units: str | None, stops: int = 11) -> dict:
    """Legend for a rescaled continuous layer: evenly spaced colour stops from ``vmin`` to ``vmax``."""
    table = _cmap.get(colormap)
    idx = [round(i * 255 / (stops - 1)) for i in range(stops)]
    return {
        "type": "continuous",
        "colormap": colormap,
        "min": vmin,
        "max": vmax,
        "units": units,
        "colors": [hex_color(table[i]) for i in idx],
    }


# EUNIS level-1 groups -> (hue in degrees, saturation): forests green, grasslands yellow-green,
# heath and scrub purple, wetlands teal, waters blue, rock grey-brown, man-made habitats orange,
# built-up red. Subtypes vary in lightness, so related types keep related colours.
EUNIS_HUES = {"T": (125, 0.55), "R": (70, 0.65), "S": (290, 0.40), "Q": (180, 0.50), "C": (215, 0.75),
              "U": (30, 0.15), "V": (35, 0.80), "J": (0, 0.70), "N": (50, 0.60), "M": (200, 0.6)}


def eunis_color(code: str) -> tuple[int, int, int, int]:
    """A stable colour for a EUNIS code: the hue of its level-1 group, lightness from its subtype."""
    hue, sat = EUNIS_HUES.get(code[:1], (0, 0.0))
    rest = code[1:].replace(".", "")
    if not rest:
        light = 0.45
    else:
        h = zlib.crc32(rest.encode()) % 1000 / 1000.0  # deterministic spread within the group
        light = 0.28 + 0.5 * h
        hue = (hue + (h - 0.5) * 24) % 360
    r, g, b = colorsys.hls_to_rgb(hue / 360.0, light, sat)
    return (round(r * 255), round(g * 255), round(b * 255), 255)


def categorical_legend(colormap: str, labels: dict[int, str]) -> dict:
    """Legend of a categorical layer: one item per class value, in the colours the tiles use."""
    table = CATEGORICAL[colormap]
    return {"type": "categorical", "colormap": colormap,
            "items": [{"value": v, "label": labels[v], "color": hex_color(table[v])} for v in sorted(labels)]}


def colormap_rgba(colormap: str, value: float, vmin: float, vmax: float) -> tuple[int, int, int, int]:
    """The RGBA that TiTiler draws for ``value`` with ``rescale=vmin,vmax`` (for tests and legends)."""
    table = _cmap.get(colormap)
    scaled = (min(max(value, vmin), vmax) - vmin) / (vmax - vmin) * 255.0
    return tuple(table[int(round(scaled))])  # type: ignore[return-value]
