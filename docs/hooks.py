"""mkdocs hook: the configuration reference is generated from the settings class, so it cannot drift.

On ``configuration.md`` the marker ``<!-- settings-table -->`` is replaced by one row per field of
``Settings``: environment variable, type, default, description. A field without a description
stops the build.
"""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path

MARKER = "<!-- settings-table -->"
PAGE = "configuration.md"

def on_page_markdown(markdown: str, page, config, files) -> str:
    """Put the generated settings table in place of the marker on the configuration page."""
    from backend.core.settings import Settings

    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise ValueError(f"{PAGE}: marker {MARKER!r} missing")

    repo_root = Path(config.config_file_path).resolve().parent
    return markdown.replace(MARKER, settings_table(Settings, repo_root))


def settings_table(settings_cls, repo_root: Path) -> str:
    """A Markdown table of every field of ``settings_cls``."""
    prefix = settings_cls.model_config.get("env_prefix", "")
    fields = settings_cls.model_fields
    missing = sorted(name for name, f in fields.items() if not f.description)
    if missing:
        raise ValueError(f"{settings_cls.__name__} fields without a description: {missing}; "
                         "give each Field(description=...)")
    rows = ["| variable | type | default | description |", "|---|---|---|---|"]
    for name, field in fields.items():
        env = field.validation_alias if isinstance(field.validation_alias, str) else prefix + name
        description = field.description
        rows.append(" | ".join((
            f"| `{env.upper()}`",
            _type(field.annotation) + _bounds(field.metadata),
            _default(field, repo_root),
            _cell(description) + " |",
        )))
    return "\n".join(rows)


def _type(annotation) -> str:
    """Readable type; Optional is left out (an unset field shows as default 'unset')."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return "one of " + ", ".join(f"`{v}`" for v in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return " or ".join(_type(a) for a in args)
    names = {str: "string", int: "integer", float: "number", bool: "boolean", Path: "path"}
    if annotation in names:
        return names[annotation]
    return {"SecretStr": "secret string"}.get(getattr(annotation, "__name__", ""), str(annotation))


def _bounds(metadata) -> str:
    signs = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<"}
    parts = [f"{sign} {getattr(m, key)}" for m in metadata for key, sign in signs.items()
             if getattr(m, key, None) is not None]
    return f" ({', '.join(parts)})" if parts else ""


def _default(field, repo_root: Path) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if isinstance(value, Path):
        try:  # defaults under the checkout read as paths relative to it, not this machine's
            value = "./" + value.resolve().relative_to(repo_root).as_posix()
        except ValueError:
            value = value.as_posix()
    return f"`{value}`"


def _cell(text: str) -> str:
    """Text safe in a table cell: pipes escaped, and <, >, & escaped outside code spans."""
    parts = re.split(r"(`[^`]*`)", " ".join(text.split()))
    out = [p if p.startswith("`") else p.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
           for p in parts]
    return "".join(out).replace("|", "\\|")
