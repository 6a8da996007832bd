"""``geoflora species import``: a researcher's species table joined with the real attribute lists."""

from __future__ import annotations

from pathlib import Path

import click

from backend.cli.base import main

_CSV = click.Path(dir_okay=False, exists=True, path_type=Path)


@main.group()
def species() -> None:
    """Species tables: attributes from the real lists (Habitats Directive, invasive, Red List, ...)."""


@species.command("import")
@click.argument("table", type=_CSV)
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The GeoFlora species table to write (CSV).")
@click.option("--directive", type=_CSV, default=None,
              help="Habitats Directive Art. 17 list matched to GBIF (CSV with verbatimScientificName, "
                   "scientificName, canonicalName, kingdom, ...).")
@click.option("--invasive", type=_CSV, default=None, help="Union invasive species list matched to GBIF (same columns).")
@click.option("--redlist", type=_CSV, default=None,
              help="IUCN / European Red List CSV: a scientific name and a category column.")
@click.option("--growth-form", "growth_form", type=_CSV, default=None,
              help="Growth-form list: a name and a growth form and / or woodiness column (optional family, conifer).")
@click.option("--endemic", type=_CSV, default=None, help="Endemic species list: a name column.")
@click.option("--traits", type=_CSV, default=None,
              help="Trait table: a species column and {trait}_median, _sd, _lowerbound, _upperbound columns "
                   "(Height, LeafArea, SLA, Leaf_N).")
def species_import(table, out, directive, invasive, redlist, growth_form, endemic, traits) -> None:
    """Join the lists to TABLE (speciesId, scientificName[, genus, family]) by canonical name, write the
    GeoFlora species table and print how many names each list matched."""
    from inference.data.species_table import import_species  # torch: the species table reads region records

    report = import_species(table, out, directive=directive, invasive=invasive, redlist=redlist,
                            growth_form=growth_form, endemic=endemic, traits=traits)
    click.echo(report.format())
