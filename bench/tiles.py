"""Tile and WMS benchmark: GeoFlora's lean tile path against stock TiTiler on the same file, in
the same run.

    python bench/tiles.py [--data-dir DATA] [--layer indicator.richness] [--zooms 12,13,14]

Needs a data dir with a live run (``make run`` / ``geoflora run``; the test suite's tiny run
works too). Both servers are driven in this process through their ASGI apps (no sockets), by
the same client code:

- cold tile: every tile requested once, one at a time (GeoFlora's in-memory tile cache off;
  open datasets and GDAL's block cache warm, as in a running server);
- throughput: all tiles, 4 requests in flight, tiles per second;
- cached tile: the same tiles again from GeoFlora's in-memory cache, and from MapProxy's WMTS
  file cache;
- WMS GetMap 512 x 512 PNG in the three CRS, boxes inside the layer.

Stock TiTiler is ``TilerFactory()`` as shipped (its ``url`` parameter pointing at the catalog
file, the catalog's rescale and colour map), i.e. rio-tiler + WarpedVRT per request.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

import httpx
import morecantile
import numpy as np
import rasterio
from rasterio.warp import transform_bounds

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.app import create_app  # noqa: E402
from backend.core.settings import Settings  # noqa: E402
from tiles.cog import GDAL_ENV  # noqa: E402
from tiles.colormaps import COLORMAPS  # noqa: E402

TMS = morecantile.tms.get("WebMercatorQuad")


def stock_titiler():
    """TiTiler's TilerFactory as shipped (plus GeoFlora's colour maps so both draw the same)."""
    from fastapi import FastAPI
    from titiler.core.dependencies import create_colormap_dependency
    from titiler.core.errors import DEFAULT_STATUS_CODES, add_exception_handlers
    from titiler.core.factory import TilerFactory

    app = FastAPI()
    app.include_router(TilerFactory(colormap_dependency=create_colormap_dependency(COLORMAPS)).router)
    add_exception_handlers(app, DEFAULT_STATUS_CODES)
    return app


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000.0, q))


async def timed(client: httpx.AsyncClient, urls: list[str]) -> list[float]:
    out = []
    for url in urls:
        t0 = time.perf_counter()
        r = await client.get(url)
        out.append(time.perf_counter() - t0)
        if r.status_code not in (200, 404):
            raise RuntimeError(f"{url}: {r.status_code} {r.text[:300]}")
    return out


async def throughput(client: httpx.AsyncClient, urls: list[str], concurrency: int = 4) -> float:
    queue = list(urls)

    async def worker():
        while queue:
            await client.get(queue.pop())

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(urls) / (time.perf_counter() - t0)


def client_for(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench", timeout=120)


async def main(args) -> None:
    data_dir = Path(args.data_dir).resolve()
    os.environ.update({k: str(v) for k, v in GDAL_ENV.items()})
    ours_cold = create_app(Settings(data_dir=data_dir, tile_cache_mb=0, _env_file=None))
    ours_warm = create_app(Settings(data_dir=data_dir, _env_file=None))
    snap = ours_cold.state.catalog.require()
    info = snap.layers[args.layer]
    with rasterio.open(info.path) as src:
        w, s, e, n = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
        b3035 = src.bounds
    zooms = [int(z) for z in args.zooms.split(",")]
    tiles = [t for t in TMS.tiles(w, s, e, n, zooms)]
    ours_urls = [info.tiles_path().format(z=t.z, x=t.x, y=t.y) for t in tiles]
    stock_urls = [f"/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.png?url={info.path}&{info.render_query()}" for t in tiles]
    wmts_urls = [f"/wmts/{info.id}/GLOBAL_WEBMERCATOR/{t.z}/{t.x}/{t.y}.png" for t in tiles]
    rng = np.random.default_rng(0)
    getmaps = []
    for crs in ("EPSG:3857", "EPSG:3035", "EPSG:4326"):
        for _ in range(args.getmaps):
            size = 512 * 30.0  # 512 px at 30 m, as a GIS window at about 1:100,000
            x0 = rng.uniform(b3035.left, max(b3035.left, b3035.right - size))
            y0 = rng.uniform(b3035.bottom, max(b3035.bottom, b3035.top - size))
            box = transform_bounds("EPSG:3035", crs, x0, y0, x0 + size, y0 + size)
            if crs in ("EPSG:3035", "EPSG:4326"):  # WMS 1.3.0 axis order: northing/latitude first
                box = (box[1], box[0], box[3], box[2])
            getmaps.append((crs, "/wms?SERVICE=WMS&VERSION=1.3.0&REQUEST=GetMap&STYLES=&FORMAT=image/png"
                            f"&TRANSPARENT=TRUE&LAYERS={info.id}&CRS={crs}&WIDTH=512&HEIGHT=512"
                            f"&BBOX={','.join(f'{v:.6f}' for v in box)}"))
    stock = stock_titiler()
    async with client_for(ours_cold) as cold, client_for(ours_warm) as warm, client_for(stock) as st:
        # warm-up: open datasets, GDAL block cache, MapProxy app (not counted)
        await timed(cold, ours_urls[:5]), await timed(st, stock_urls[:5]), await timed(warm, getmaps[0][1:])
        rounds = []
        for _ in range(args.rounds):
            rounds.append((await timed(cold, ours_urls), await timed(st, stock_urls)))
        ours_t = [v for r in rounds for v in r[0]]
        stock_t = [v for r in rounds for v in r[1]]
        ours_tp = await throughput(cold, ours_urls * args.rounds)
        stock_tp = await throughput(st, stock_urls * args.rounds)
        await timed(warm, ours_urls)  # fill the in-memory cache
        cached_t = await timed(warm, ours_urls)
        await timed(warm, wmts_urls)  # fill MapProxy's file cache
        wmts_t = await timed(warm, wmts_urls)
        getmap_t = {crs: [] for crs, _ in getmaps}
        for crs, url in getmaps:
            getmap_t[crs] += await timed(warm, [url])
    load = os.getloadavg()
    print(f"\nlayer {info.id} ({info.path.name}), {len(tiles)} tiles at zooms {args.zooms}, {args.rounds} rounds; "
          f"load average {load[0]:.2f} / {load[1]:.2f} on {os.cpu_count()} cores\n")
    print("| measure | GeoFlora | stock TiTiler | ratio |")
    print("|---|---:|---:|---:|")
    print(f"| cold tile p50 (ms) | {pct(ours_t, 50):.1f} | {pct(stock_t, 50):.1f} | {pct(stock_t, 50) / pct(ours_t, 50):.1f}x |")
    print(f"| cold tile p99 (ms) | {pct(ours_t, 99):.1f} | {pct(stock_t, 99):.1f} | {pct(stock_t, 99) / pct(ours_t, 99):.1f}x |")
    print(f"| throughput, 4 in flight (tiles/s) | {ours_tp:.0f} | {stock_tp:.0f} | {ours_tp / stock_tp:.1f}x |")
    print(f"| cached tile p50 / p99 (ms), in-memory | {pct(cached_t, 50):.2f} / {pct(cached_t, 99):.2f} | | |")
    print(f"| cached tile p50 / p99 (ms), WMTS file cache | {pct(wmts_t, 50):.2f} / {pct(wmts_t, 99):.2f} | | |")
    for crs, values in getmap_t.items():
        print(f"| WMS GetMap 512 x 512 {crs} p50 / p99 (ms) | {pct(values, 50):.1f} / {pct(values, 99):.1f} | | |")
    print(f"\nmedian of per-round p50: GeoFlora {statistics.median(pct(r[0], 50) for r in rounds):.1f} ms, "
          f"stock {statistics.median(pct(r[1], 50) for r in rounds):.1f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=os.environ.get("GEOFLORA_DATA_DIR", "data"))
    parser.add_argument("--layer", default="indicator.richness")
    parser.add_argument("--zooms", default="12,13,14")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--getmaps", type=int, default=20, help="GetMap requests per CRS")
    asyncio.run(main(parser.parse_args()))
