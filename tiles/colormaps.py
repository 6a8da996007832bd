"""Colour maps and the legends that describe them (the same numbers drive tiles and legends)."""

from __future__ import annotations

from rio_tiler.colormap import cmap as _cmap


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


def colormap_rgba(colormap: str, value: float, vmin: float, vmax: float) -> tuple[int, int, int, int]:
    """The RGBA that TiTiler draws for ``value`` with ``rescale=vmin,vmax`` (for tests and legends)."""
    table = _cmap.get(colormap)
    scaled = (min(max(value, vmin), vmax) - vmin) / (vmax - vmin) * 255.0
    return tuple(table[int(round(scaled))])  # type: ignore[return-value]
