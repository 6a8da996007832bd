"""What every ``geoflora`` command shares: the top group (which turns GeoFlora's errors into click
errors, in this one place), the region option and the catalog sessions."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path

import click

from backend.core.errors import GeoFloraError
from backend.core.settings import Settings, get_settings
from backend.db.engine import make_engine, make_sessionmaker, migrate
from inference.models import kind as model_kind


class GeoFloraGroup(click.Group):
    """The top group: a GeoFloraError raised by any command (a region that cannot be read, a file
    of the wrong format, a wrong checkpoint, a run that cannot proceed) ends the command with its
    message and exit status 1, not a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except GeoFloraError as exc:
            raise click.ClickException(exc.message) from exc


@click.group(cls=GeoFloraGroup)
@click.option("-v", "--verbose", is_flag=True, help="Log at INFO level.")
def main(verbose: bool) -> None:
    """GeoFlora: plant species, habitats, indicators and traits at 50 m."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


@dataclass(frozen=True)
class RegionRef:
    """The region a command works on: ``--region`` (``given``) or the demo region of the settings."""

    name: str
    path: Path
    given: str | None

    def require(self) -> Path:
        """The region's folder; a click error naming the command that makes it when it is missing."""
        if not (self.path / "region.json").is_file():
            raise click.ClickException(f"region {self.name!r} does not exist at {self.path}: "
                                       f"run `geoflora generate --name {self.name}`")
        return self.path

    def checkpoint(self, kind: str, given: Path | None = None) -> Path:
        """The ``kind`` model of this region (``given``, else its default path); a click error
        naming the command that trains it when there is none (the region itself is checked first)."""
        self.require()
        mk = model_kind(kind)
        path = given or get_settings().layout.checkpoint(self.name, kind)
        if not path.is_file():
            raise click.ClickException(f"no {mk.title} checkpoint at {path}: "
                                       f"run `{mk.train_command} --region {self.name}`")
        return path

    def load(self, needs: str | None = None):
        """The region itself (its rasters, flora and plots), loaded from :meth:`require`'s folder.
        ``needs`` (e.g. "survey plots", "the truth") names what only a generated region has: a
        click error says so for a region made from rasters."""
        from inference.data.interface import has_truth  # torch: only for commands that read a region
        from inference.data.region import load_region  # torch: only for commands that read a region

        region = load_region(self.require())
        if needs and not has_truth(region):
            raise click.ClickException(f"region {self.name!r} is made from rasters: it has no {needs}, which this "
                                       f"command reads from a generated region (see docs/real-region.md for what "
                                       f"trains on real data)")
        return region


def region_option(help_text: str = "Region name (default: the demo region)."):
    """``--region NAME``, resolved once for every command: the command receives ``region``, a
    :class:`RegionRef`."""

    def decorate(command):
        @click.option("--region", "region_name", default=None, help=help_text)
        @functools.wraps(command)
        def with_region(*args, region_name: str | None = None, **kwargs):
            settings = get_settings()
            name = region_name or settings.demo_region
            return command(*args, region=RegionRef(name, settings.layout.region_dir(name), region_name), **kwargs)

        return with_region

    return decorate


def sessions_for(settings: Settings):
    """Catalog sessions, after migrating the catalog to the newest revision."""
    migrate(settings.db_url)
    return make_sessionmaker(make_engine(settings.db_url))
