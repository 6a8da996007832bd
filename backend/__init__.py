"""GeoFlora backend: settings, catalog database, REST API, CLI."""

__version__ = "0.1.0"
