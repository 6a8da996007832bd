"""Area report latency on a synthetic run with 10,000 species (issue 9 goals on 2 cores: a 625 km2
area in at most 150 ms, a 10,000 km2 area in at most 1 s).

A synthetic finished run (5 x 5 meta-tiles, 10,000 species, ~90 species per cell, the pipeline's
assemblage writer, every report layer as COGs) is generated in a temporary folder, its report index
is built, then each area is timed:

- ``report``: what a POST costs before storage: geometry checks and projection, the index sums
  (whole blocks from their aggregates, boundary cells cell by cell) and the report's modules;
- ``POST``: the whole request through the app (report + JSON + storing it in the catalog), a new
  area each time (shifted by a metre, so never answered from the store);
- anchor: the naive computation, every cell of the area decompressed and summed (``direct_sums``),
  in the same run.

Usage: ``python bench/reports.py [--tiles 5] [--species 10000] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pyproj import Transformer  # noqa: E402

from inference.grid import METATILE_M, MetaTile  # noqa: E402

TO_WGS = Transformer.from_crs("EPSG:3035", "EPSG:4326", always_xy=True)
X0, Y0 = 4_200_000, 2_800_000


def doc(points, shift: float = 0.0) -> dict:
    ring = [list(TO_WGS.transform(x + shift, y + shift)) for x, y in points]
    return {"type": "Polygon", "coordinates": [ring + [ring[0]]]}


def square(x, y, side):
    return [(x, y), (x + side, y), (x + side, y + side), (x, y + side)]


def blob(cx, cy, area_km2, n=96):
    """An irregular outline (a wobbly circle) of about ``area_km2``."""
    r = math.sqrt(area_km2 * 1e6 / math.pi)
    pts = [(cx + r * (1 + 0.08 * math.sin(5 * t)) * math.cos(t), cy + r * (1 + 0.08 * math.sin(5 * t)) * math.sin(t))
           for t in (2 * math.pi * k / n for k in range(n))]
    return pts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tiles", type=int, default=5, help="Region edge in meta-tiles (at least 4).")
    ap.add_argument("--species", type=int, default=10_000)
    ap.add_argument("--pool", type=int, default=300, help="Species of a chunk's local pool (~30 %% present).")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--data", type=Path, default=None,
                    help="Keep the synthetic run in this folder and reuse it when it is there (default: a "
                    "temporary folder, removed afterwards).")
    args = ap.parse_args()
    if args.data is not None:
        _bench(args, args.data)
        return
    tmp = Path(tempfile.mkdtemp(prefix="geoflora-bench-reports-"))
    try:
        _bench(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _bench(args, tmp: Path) -> None:
    from fastapi.testclient import TestClient

    from backend.app import create_app
    from backend.core.settings import Settings
    from backend.db.models import Report, Run
    from backend.reports.aggregate import direct_sums
    from backend.reports.geometry import parse_area
    from backend.reports.service import ReportService
    from tests.reports_data import make_synthetic_run

    tile_ids = [MetaTile(X0 + i * METATILE_M, Y0 + j * METATILE_M).id for j in range(args.tiles) for i in range(args.tiles)]
    t0 = time.perf_counter()
    reuse = (tmp / "runs" / "bench" / "metatiles").is_dir()
    if not reuse:
        make_synthetic_run(tmp, tile_ids, n_species=args.species, pool=args.pool, seed=1, run_id="bench",
                           keep_truth=False)
    t_make = time.perf_counter() - t0
    settings = Settings(data_dir=tmp, _env_file=None, report_async_km2=1e9)
    app = create_app(settings)
    service: ReportService = app.state.reports
    with service.sessions() as session:
        session.query(Report).filter(Report.run_id == "bench").delete()  # a reused run: time fresh POSTs
        session.commit()
        run = session.get(Run, "bench")
        t0 = time.perf_counter()
        index = service.index(run)
        t_index = time.perf_counter() - t0
        index_bytes = sum(f.stat().st_size for f in index.folder.rglob("*") if f.is_file())
        store_bytes = sum(f.stat().st_size for f in (tmp / "runs" / "bench" / "metatiles").rglob("assemblage.bin"))

        side = args.tiles * METATILE_M
        areas = [
            ("625 km2, one whole meta-tile", square(X0 + METATILE_M, Y0 + METATILE_M, METATILE_M)),
            ("625 km2, irregular, across 4 meta-tiles", blob(X0 + 2 * METATILE_M, Y0 + 2 * METATILE_M, 625)),
            ("10,000 km2, square of 16 meta-tiles", square(X0, Y0, 4 * METATILE_M)),
            ("10,000 km2, irregular", blob(X0 + side / 2, Y0 + side / 2, 10_000)),
        ]
        rows = []
        with TestClient(app) as client:
            for name, pts in areas:
                area = parse_area(doc(pts), settings.max_vertices, settings.max_area_km2)
                times, posts, naive = [], [], []
                for k in range(args.repeat):
                    t0 = time.perf_counter()
                    a = parse_area(doc(pts), settings.max_vertices, settings.max_area_km2)
                    report = service.compute(session, run, a, "bench")
                    times.append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    r = client.post("/api/reports", json=doc(pts, shift=k + 1.0))
                    posts.append(time.perf_counter() - t0)
                    assert r.status_code == 200, r.text
                    t0 = time.perf_counter()
                    direct = direct_sums(index, area.grid)
                    naive.append(time.perf_counter() - t0)
                assert direct.n_cells == report["area"]["cells"]
                rows.append((name, report["area"]["km2"], report["area"]["cells"], report["species"]["total"],
                             statistics.median(times), min(times), statistics.median(posts), statistics.median(naive)))

    load = os.getloadavg()
    print(f"synthetic run: {args.tiles}x{args.tiles} meta-tiles, {args.species:,} species "
          f"({'reused' if reuse else f'generated in {t_make:.0f} s'}); report index built in {t_index:.1f} s, "
          f"{index_bytes / 2**20:.0f} MiB ({index_bytes / len(tile_ids) / 2**20:.1f} MiB per meta-tile; "
          f"assemblage stores {store_bytes / len(tile_ids) / 2**20:.1f} MiB per meta-tile)")
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, {os.cpu_count()} CPUs\n")
    print("| area | km2 | cells | species present | report (median) | report (best) | POST incl. storage | "
          "naive per-cell (anchor) | speed-up |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, km2, cells, n_sp, med, best, post, naive in rows:
        print(f"| {name} | {km2:,.0f} | {cells:,} | {n_sp:,} | {med * 1000:,.0f} ms | {best * 1000:,.0f} ms | "
              f"{post * 1000:,.0f} ms | {naive * 1000:,.0f} ms | {naive / med:.1f}x |")


if __name__ == "__main__":
    main()
