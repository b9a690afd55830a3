"""`infer cache ls` and `infer cache clear`: the datasets kept under the cache root."""

from __future__ import annotations

import json

import click

CACHE_DIR_HELP = "Cache root (default $INFER_CACHE or ~/.cache/infer)."


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(n)


@click.group()
def cache() -> None:
    """Datasets kept under the cache root: URL mirrors, stream caches, decoded groups."""


@cache.command("ls")
@click.option("--cache-dir", default=None, type=click.Path(file_okay=False), help=CACHE_DIR_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list (kind, key, source, bytes, disk_bytes, path).")
def ls(cache_dir: str | None, as_json: bool) -> None:
    """List cached datasets: kind, key, size on disk, source and folder."""
    from infer_data.cachedir import list_cache
    from infer_data.remote import default_cache_dir

    entries = list_cache(cache_dir)
    if as_json:
        click.echo(json.dumps([e.to_json() for e in entries], indent=1))
        return
    root = cache_dir or default_cache_dir()
    if not entries:
        click.echo(f"nothing cached under {root}")
        return
    click.echo(f"{'KIND':8} {'KEY':16} {'SIZE':>10}  SOURCE -> FOLDER")
    for e in entries:
        click.echo(f"{e.kind:8} {e.key:16} {_human(e.disk_bytes):>10}  {e.source} -> {e.path}")
    total = sum(e.disk_bytes for e in entries)
    click.echo(f"{len(entries)} cached dataset(s), {_human(total)} on disk under {root}")


@cache.command("clear")
@click.argument("what", required=False)
@click.option("--all", "everything", is_flag=True, help="Remove every cached dataset.")
@click.option("--cache-dir", default=None, type=click.Path(file_okay=False), help=CACHE_DIR_HELP)
def clear(what: str | None, everything: bool, cache_dir: str | None) -> None:
    """Remove the cached dataset WHAT (a key, URL prefix or dataset folder, as `infer cache ls`
    shows them; a URL also removes its decoded groups), or every one with --all."""
    from infer_data.cachedir import list_cache, remove_entry, select
    from infer_data.errors import ConfigError

    if (what is None) == (not everything):
        raise ConfigError("infer cache clear: give a key, URL or folder from `infer cache ls`, or --all (not both)")
    entries = list_cache(cache_dir)
    chosen = entries if everything else select(entries, what or "")
    for e in chosen:
        remove_entry(e)
        click.echo(f"removed {e.kind} {e.key} ({_human(e.disk_bytes)}): {e.source}")
    if not chosen:
        click.echo("nothing cached")
