"""Legend images (WMS GetLegendGraphic) drawn from the catalog legend, in the tiles' own colours."""

from __future__ import annotations

from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

from backend.core.layers import LayerInfo
from tiles.render import _table

FONT_SIZE = 11
RAMP_W, RAMP_H, PAD = 200, 12, 4
SWATCH = 12
MAX_ITEMS = 60  # categorical legends longer than this are cut (with a note)


@lru_cache(maxsize=1)
def _font() -> ImageFont.ImageFont:
    return ImageFont.load_default(size=FONT_SIZE)


def _fmt(v: float) -> str:
    return f"{v:.3g}"


def _text_width(draw: ImageDraw.ImageDraw, text: str) -> int:
    return int(draw.textlength(text, font=_font()))


def legend_image(info: LayerInfo) -> Image.Image:
    """An RGBA legend image for ``info``: a colour ramp with its range and units, a list of class
    swatches with labels, or the band meaning of an RGB layer."""
    legend = info.legend or {}
    kind = legend.get("type")
    probe = ImageDraw.Draw(Image.new("RGBA", (1, 1)))
    line = FONT_SIZE + 4
    if kind == "continuous":
        table = _table(legend.get("colormap") or info.colormap or "viridis")
        units = legend.get("units") or info.units or ""
        lo, hi = _fmt(legend["min"]), _fmt(legend["max"])
        mid = _fmt((legend["min"] + legend["max"]) / 2)
        width = RAMP_W + 2 * PAD + _text_width(probe, hi) // 2
        img = Image.new("RGBA", (width, PAD + RAMP_H + 3 + 2 * line), (255, 255, 255, 0))
        draw = ImageDraw.Draw(img)
        for i in range(RAMP_W):
            color = tuple(int(c) for c in table[round(i * 255 / (RAMP_W - 1))])
            draw.line([(PAD + i, PAD), (PAD + i, PAD + RAMP_H - 1)], fill=color)
        draw.rectangle([PAD - 1, PAD - 1, PAD + RAMP_W, PAD + RAMP_H], outline=(80, 80, 80, 255))
        y = PAD + RAMP_H + 4
        for frac, label in ((0.0, lo), (0.5, mid), (1.0, hi)):
            x = PAD + frac * (RAMP_W - 1)
            draw.line([(x, PAD + RAMP_H), (x, y)], fill=(80, 80, 80, 255))
            tw = _text_width(draw, label)
            draw.text((max(0, min(width - tw, x - tw / 2)), y), label, fill=(0, 0, 0, 255), font=_font())
        if units:
            draw.text((PAD, y + line), units, fill=(60, 60, 60, 255), font=_font())
        return img
    if kind == "categorical":
        items = legend.get("items", [])
        shown = items[:MAX_ITEMS]
        labels = [str(it.get("label", it.get("value"))) for it in shown]
        if len(items) > len(shown):
            labels.append(f"... and {len(items) - len(shown)} more classes")
        width = PAD * 3 + SWATCH + max((_text_width(probe, t) for t in labels), default=40)
        img = Image.new("RGBA", (width, PAD * 2 + line * len(labels)), (255, 255, 255, 0))
        draw = ImageDraw.Draw(img)
        for i, label in enumerate(labels):
            y = PAD + i * line
            if i < len(shown):
                color = shown[i].get("color", "#000000").lstrip("#")
                rgb = tuple(int(color[k:k + 2], 16) for k in (0, 2, 4))
                draw.rectangle([PAD, y + 1, PAD + SWATCH, y + 1 + SWATCH], fill=rgb + (255,), outline=(80, 80, 80, 255))
            draw.text((PAD * 2 + SWATCH, y), label, fill=(0, 0, 0, 255), font=_font())
        return img
    lines = [f"{c}: {b}" for c, b in zip("RGB", legend.get("bands", []))] or [info.title]
    width = PAD * 2 + max(_text_width(probe, t) for t in lines)
    img = Image.new("RGBA", (width, PAD * 2 + line * len(lines)), (255, 255, 255, 0))
    draw = ImageDraw.Draw(img)
    for i, (t, color) in enumerate(zip(lines, [(200, 0, 0, 255), (0, 140, 0, 255), (0, 0, 200, 255)] * 3)):
        draw.text((PAD, PAD + i * line), t, fill=color if legend.get("bands") else (0, 0, 0, 255), font=_font())
    return img
