"""GeoFlora inference: data (generator and readers), models, the meta-tile pipeline and Celery."""
