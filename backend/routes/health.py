from fastapi import APIRouter

from backend import __version__
from backend.db.engine import is_sqlite
from backend.deps import CatalogDep, SettingsDep
from backend.schemas import Health

router = APIRouter(tags=["Service"])


@router.get("/health", response_model=Health, summary="Liveness and the live run")
def health(settings: SettingsDep, catalog: CatalogDep) -> Health:
    snap = catalog.snapshot()
    return Health(
        version=__version__,
        database="sqlite" if is_sqlite(settings.db_url) else "postgresql",
        live_run=snap.run_id if snap else None,
    )
