"""Region mosaics: a GDAL VRT over the meta-tile COGs of one layer (aligned, same grid), with
region-wide overviews in an external ``.vrt.ovr`` so that low zooms read one small file instead of
opening every meta-tile."""

from __future__ import annotations

import os
from pathlib import Path
from xml.sax.saxutils import escape

import rasterio
from rasterio.crs import CRS
from rasterio.enums import Resampling

from backend.core.atomic import atomic_path
from tiles.cog import GDAL_ENV

_GDAL_TYPES = {
    "uint8": "Byte",
    "uint16": "UInt16",
    "int16": "Int16",
    "uint32": "UInt32",
    "int32": "Int32",
    "float32": "Float32",
    "float64": "Float64",
}


# Region overviews start at 1/4 of the full resolution (the meta-tile COGs hold their own 1/2
# level) and halve until the mosaic fits one 256-pixel tile.
FIRST_OVERVIEW = 4
OVERVIEW_ENV = {"COMPRESS_OVERVIEW": "DEFLATE", "GDAL_TIFF_OVR_BLOCKSIZE": 256, "INTERLEAVE_OVERVIEW": "BAND",
                "BIGTIFF_OVERVIEW": "IF_SAFER"}


_OVERVIEW = """    <Overview>
      <SourceFilename relativeToVRT="1">{source}</SourceFilename>
      <SourceBand>{band}</SourceBand>
    </Overview>"""


def overview_factors(width: int, height: int) -> list[int]:
    """Decimation factors of the region overviews of a ``width`` x ``height`` mosaic."""
    factors = [FIRST_OVERVIEW]
    while max(width, height) / factors[-1] > 256:
        factors.append(factors[-1] * 2)
    return factors


def build_vrt(path: Path, sources: list[Path], resampling: str | None = None) -> Path:
    """Write a VRT mosaicking ``sources`` (same CRS, resolution, bands and dtype) and its region
    overviews (``path.ovr``), atomically: the overviews are renamed into place first, the VRT last.

    Source paths are written relative to the VRT so the data dir can move (or be mounted
    elsewhere on a worker or API machine). ``resampling`` of the overviews defaults to the one the
    sources' own overviews were built with (``OVERVIEW_RESAMPLING`` tag), else nearest for
    palette layers and average for the rest.
    """
    if not sources:
        raise ValueError("a mosaic needs at least one source file")
    infos = []
    with rasterio.Env(**GDAL_ENV):
        for src_path in sources:
            with rasterio.open(src_path) as src:
                infos.append((src_path, src.bounds, src.width, src.height, src.res, src.count,
                              src.dtypes[0], src.nodata, src.crs, src.descriptions, src.colormap(1)
                              if src.colorinterp[0].name == "palette" else None, src.scales, src.offsets))
                if resampling is None:
                    resampling = src.tags().get("OVERVIEW_RESAMPLING")
    res = infos[0][4]
    crs: CRS = infos[0][8]
    left = min(i[1].left for i in infos)
    top = max(i[1].top for i in infos)
    right = max(i[1].right for i in infos)
    bottom = min(i[1].bottom for i in infos)
    width = int(round((right - left) / res[0]))
    height = int(round((top - bottom) / res[1]))
    count, dtype, nodata = infos[0][5], infos[0][6], infos[0][7]
    descriptions, colormap, scales, offsets = infos[0][9], infos[0][10], infos[0][11], infos[0][12]
    for info in infos[1:]:
        if info[4] != res or info[5] != count or info[6] != dtype or info[8] != crs:
            raise ValueError(f"{info[0]} does not match the grid, bands or dtype of {infos[0][0]}")
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">',
        f"  <SRS>{escape(crs.to_wkt())}</SRS>",
        f"  <GeoTransform>{left!r}, {res[0]!r}, 0.0, {top!r}, 0.0, {-res[1]!r}</GeoTransform>",
    ]
    for b in range(1, count + 1):
        lines.append(f'  <VRTRasterBand dataType="{_GDAL_TYPES[dtype]}" band="{b}">')
        if descriptions and descriptions[b - 1]:
            lines.append(f"    <Description>{escape(descriptions[b - 1])}</Description>")
        if nodata is not None:
            lines.append(f"    <NoDataValue>{nodata!r}</NoDataValue>")
        if (scales and scales[b - 1] != 1.0) or (offsets and offsets[b - 1] != 0.0):  # uint8 codes x 1/250
            lines.append(f"    <Offset>{offsets[b - 1] if offsets else 0.0!r}</Offset>")
            lines.append(f"    <Scale>{scales[b - 1] if scales else 1.0!r}</Scale>")
        if b == 1 and colormap:
            lines.append("    <ColorInterp>Palette</ColorInterp>")
            lines.append("    <ColorTable>")
            for idx in range(max(colormap) + 1):
                r, g, bl, a = colormap.get(idx, (0, 0, 0, 0))
                lines.append(f'      <Entry c1="{r}" c2="{g}" c3="{bl}" c4="{a}"/>')
            lines.append("    </ColorTable>")
        for src_path, bounds, w, h, *_ in infos:
            x_off = int(round((bounds.left - left) / res[0]))
            y_off = int(round((top - bounds.top) / res[1]))
            rel = os.path.relpath(src_path, path.parent)
            lines += [
                "    <ComplexSource>" if nodata is not None else "    <SimpleSource>",
                f'      <SourceFilename relativeToVRT="1">{escape(rel)}</SourceFilename>',
                f"      <SourceBand>{b}</SourceBand>",
                f'      <SrcRect xOff="0" yOff="0" xSize="{w}" ySize="{h}"/>',
                f'      <DstRect xOff="{x_off}" yOff="{y_off}" xSize="{w}" ySize="{h}"/>',
            ]
            if nodata is not None:
                lines.append(f"      <NODATA>{nodata!r}</NODATA>")
            lines.append("    </ComplexSource>" if nodata is not None else "    </SimpleSource>")
        lines.append(_OVERVIEW.format(source=escape(path.name + ".ovr"), band=b))
        lines.append("  </VRTRasterBand>")
    lines.append("</VRTDataset>")
    if resampling is None:
        resampling = "nearest" if colormap else "average"
    with atomic_path(path) as tmp:
        ovr_tmp = Path(str(tmp) + ".ovr")
        try:  # first without the <Overview> elements: GDAL builds them from it
            tmp.write_text("\n".join(line for line in lines if "<Overview>" not in line) + "\n")
            # GDAL writes a VRT's overviews to an external ``<file>.ovr`` and leaves the VRT as it is.
            with rasterio.Env(**GDAL_ENV, **OVERVIEW_ENV), rasterio.open(tmp, "r+") as vrt:
                vrt.build_overviews(overview_factors(width, height), Resampling[resampling.lower()])
            os.replace(ovr_tmp, Path(str(path) + ".ovr"))
        except BaseException:
            ovr_tmp.unlink(missing_ok=True)
            raise
        # then with them: GDAL and every GDAL client (TiTiler, QGIS) find the region overviews from
        # the VRT alone, even with GDAL_DISABLE_READDIR_ON_OPEN; the .ovr's first page is the first
        # level and its further pages are that page's own overviews, so every level is reachable
        tmp.write_text("\n".join(lines) + "\n")
    return path
