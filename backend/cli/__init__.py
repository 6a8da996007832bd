"""The ``geoflora`` command line, one module per group of commands:

- :mod:`~backend.cli.data`: ``migrate``, ``generate``, ``habitat classify``
- :mod:`~backend.cli.train`: ``train sdm|plantbert|botaclip|traits``
- :mod:`~backend.cli.evaluate`: ``evaluate sdm|plantbert|botaclip|traits``
- :mod:`~backend.cli.runs`: ``compute`` (also ``run``), ``worker``, ``demo``
- :mod:`~backend.cli.serve`: ``serve``, ``seed``
- :mod:`~backend.cli.species`: ``species import``
- :mod:`~backend.cli.region`: ``region create``
- :mod:`~backend.cli.models`: ``models import-geoplant|import-plantbert``
"""

from backend.cli import data, evaluate, models, region, runs, serve, species, train  # noqa: F401 - each module registers its commands
from backend.cli.base import main

__all__ = ["main"]
