"""The Celery app of a worker process, for the ``celery`` command line
(``celery -A backend.jobs.worker worker|inspect ...``); ``geoflora worker`` builds the same app.
Only this entry module builds an app at import time, from the environment's settings."""

from __future__ import annotations

from backend.core.settings import get_settings
from backend.jobs.celery_app import make_celery

app = make_celery(get_settings())
