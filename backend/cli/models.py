"""``geoflora models``: published weights from local files -> GeoFlora checkpoints
(docs/models/published.md)."""

from __future__ import annotations

from pathlib import Path

import click

from backend.cli.base import main
from backend.core.settings import get_settings

_FILE = click.Path(dir_okay=False, exists=True, path_type=Path)
_DIR = click.Path(file_okay=False, exists=True, path_type=Path)
_OUT = click.Path(dir_okay=False, path_type=Path)


@main.group()
def models() -> None:
    """Published weights (GeoPlant baselines, Pl@ntBERT) from local files -> GeoFlora checkpoints."""


def _few(names: list[str], limit: int = 10) -> str:
    return ", ".join(names[:limit]) + (f" ... ({len(names)} in all)" if len(names) > limit else "")


@models.command("import-geoplant")
@click.argument("state_dict", type=_FILE)
@click.option("--species", "species", required=True,
              help="speciesId of each output, in output order: a CSV (speciesId column), JSON, .pt, .npy or .txt "
                   "file, or 'identity' (output i is speciesId i, as the GeoPlant notebooks index them).")
@click.option("--out", "out", type=_OUT, required=True, help="The GeoFlora SDM checkpoint to write (e.g. sdm.pt).")
@click.option("--modality", type=click.Choice(["s2", "climate", "landsat"]), default=None,
              help="The modality of a single-modality ResNet6 state dict (not needed for an ensemble).")
@click.option("--keep-species", "keep_species", type=_FILE, default=None,
              help="Keep only these speciesId (a file as for --species, e.g. the region's species table).")
@click.option("--normalizer", default="notebook", show_default=True,
              help="Input normalisation: 'notebook' (S2 (x - 127.5) / 127.5, cubes raw, as the notebooks), "
                   "'identity', 'fit' (statistics of --calibrate-with) or a JSON file (Normalizer.to_dict()).")
@click.option("--calibrate-with", "calibrate_with", type=_DIR, default=None,
              help="A GeoPlant (GLC24 / GLC25) PA folder for the conformal threshold; without it only an F1 "
                   "default of 0.5 is stored and `geoflora compute` cannot use the checkpoint.")
@click.option("--alpha", type=float, default=None, help="Conformal level (default: GEOFLORA_ALPHA).")
@click.option("--platt", is_flag=True, help="Also calibrate the probabilities on --calibrate-with (folded into the head).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the 10 km block split.")
@click.option("--max-surveys", "max_surveys", type=int, default=None, help="Read at most this many surveys.")
def import_geoplant(state_dict, species, out, modality, keep_species, normalizer, calibrate_with, alpha, platt, seed,
                    max_surveys) -> None:
    """Map a GeoPlant baseline STATE_DICT (the MME notebooks' ensemble or one ResNet6) onto GeoFlora's
    SDM and write it as a GeoFlora SDM checkpoint."""
    from inference.sdm.published import (  # torch: only for this command
        import_geoplant_state_dict,
        read_species_index,
    )

    keep = read_species_index(keep_species, None).tolist() if keep_species else None
    report = import_geoplant_state_dict(
        state_dict, species, out, modality=modality, keep_species=keep, normalizer=normalizer,
        calibrate_with=calibrate_with, alpha=get_settings().alpha if alpha is None else alpha, platt=platt,
        seed=seed, max_surveys=max_surveys, progress=True)
    src = report["source"]
    click.echo(f"{out}: {src['layout']} over {', '.join(src['modalities'])}, {report['n_species']} species "
               f"(of {src['outputs']} outputs); normaliser {report['normalizer']}")
    if report["keep_species_not_in_model"]:
        click.echo(f"species to keep that the model lacks: {_few([str(s) for s in report['keep_species_not_in_model']])}")
    chk = report.get("check")
    if chk:
        diffs = ", ".join(f"{k} {chk[k]:.2g}" for k in (*src["modalities"], "logits"))
        click.echo(f"check against the published forward (max abs difference): {diffs}")
        if not chk["exact"]:
            click.echo(f"WARNING: the imported model does not reproduce the published one exactly: pooling "
                       f"{chk['pooling']}", err=True)
    t = report["thresholds"]
    if "conformal" in t:
        click.echo(f"thresholds: conformal {t['conformal']:.4f} (alpha {t['alpha']}, {t['conformal_method']}; "
                   f"global split conformal {t['conformal_global']:.4f}), "
                   f"F1-optimal {t['f1_optimal']:.2f}; {report['n_cal']} calibration, {report['n_test']} test surveys")
    else:
        click.echo(f"WARNING: {report['warning']}", err=True)


@models.command("import-plantbert")
@click.argument("hf_dir", type=_DIR)
@click.option("--species-table", "species_table", type=_FILE, required=True,
              help="Species table CSV (speciesId / id and scientificName / name columns, e.g. the GeoFlora "
                   "species table): the model's species names are matched to it by canonical name.")
@click.option("--out", "out", type=_OUT, required=True, help="The GeoFlora Pl@ntBERT checkpoint to write.")
@click.option("--top-n", "top_n", type=int, default=100, show_default=True, help="Longest species list fed.")
@click.option("--strict-labels", "strict_labels", is_flag=True,
              help="Refuse labels that are not EUNIS level-3 codes of GeoFlora's table (default: drop them).")
def import_plantbert(hf_dir, species_table, out, top_n, strict_labels) -> None:
    """Convert a Hugging Face Pl@ntBERT folder HF_DIR (BertForSequenceClassification, one added token per
    species, id2label EUNIS codes) onto the species of a species table and write a GeoFlora Pl@ntBERT
    checkpoint."""
    from inference.habitat.published import import_plantbert as convert  # torch: only for this command

    report = convert(hf_dir, species_table, out, top_n=top_n, strict_labels=strict_labels)
    sp, lab = report["species"], report["labels"]
    click.echo(f"{out}: {sp['matched']} species of {report['source']['species_tokens']} model names matched "
               f"({sp['table_not_in_model']} table species are not in the model), {lab['kept']} habitat labels")
    if sp["unknown_names"]:
        click.echo(f"model names not in the species table ({len(sp['unknown_names'])}): {_few(sp['unknown_names'])}")
    if sp["duplicate_names"]:
        click.echo(f"model names matching an already matched species: {_few(sp['duplicate_names'])}")
    if lab["dropped"]:
        click.echo(f"labels not in GeoFlora's EUNIS level-3 table, dropped ({len(lab['dropped'])}): "
                   f"{_few(lab['dropped'])}")
    chk = report.get("check")
    if chk:
        line = (f"check on {chk['lists']} random lists: max abs logit difference {chk['max_abs_logit_diff']:.2g}, "
                f"same class {chk['argmax_agreement']:.0%}")
        line += f" ({chk['input']} input, as the published model was trained)"
        click.echo(line)
