"""Dependencies injected into routes: settings, DB session, live catalog, report service."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from backend.catalog import LiveCatalog
from backend.core.settings import Settings
from backend.reports.service import ReportService


def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as session:
        yield session


def get_catalog(request: Request) -> LiveCatalog:
    return request.app.state.catalog


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
CatalogDep = Annotated[LiveCatalog, Depends(get_catalog)]


def get_reports(request: Request):
    return request.app.state.reports


ReportsDep = Annotated[ReportService, Depends(get_reports)]
