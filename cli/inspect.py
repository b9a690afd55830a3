"""`infer info` and `infer verify`."""

from __future__ import annotations

import json
import sys

import click

from .options import root_argument


def _human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024  # type: ignore[assignment]
    return str(n)


@click.command()
@root_argument
@click.option("--json", "as_json", is_flag=True, help="Print the whole index as JSON.")
def info(root: str, as_json: bool) -> None:
    """What the distilled dataset at ROOT is: source, counts, codecs, provenance."""
    from infer_data.index import read_index

    ix = read_index(root)
    if as_json:
        click.echo(json.dumps(ix.to_dict(), indent=1))
        return
    d, m = ix.dataset, ix.method
    c, h, w = d.image_shape
    total = sum(s.bytes for s in ix.shards)
    lines = [
        f"INFER dataset at {root} (format v{ix.version}.{ix.minor})",
        f"  source      {d.name}: {d.num_classes} classes, images {c}x{h}x{w}" + (f", from {d.source}" if d.source else ""),
        f"  groups      G={ix.num_groups}  K={m.k} bases  M={m.m} compensators  ipc={m.ipc}",
        f"  instances   {ix.num_instances} (= K*(M+1)*G) from {ix.num_groups * (m.k + m.m)} stored images",
        f"  teachers    {', '.join(m.teachers) or '(none)'}",
        "  codecs      " + ", ".join(f"{f}={_codec(s)}" for f, s in ix.codecs.items()),
        f"  shards      {len(ix.shards)}, {_human(total)} ({total} bytes)",
        f"  producer    {m.producer or '(unknown)'}, seed {m.seed}",
    ]
    for key, value in sorted(ix.provenance.items()):
        text = json.dumps(value, sort_keys=True)
        lines.append(f"  provenance  {key}: {text if len(text) < 100 else text[:97] + '...'}")
    click.echo("\n".join(lines))


def _codec(spec: dict[str, object]) -> str:
    params = ",".join(f"{k}={v}" for k, v in spec.items() if k != "name")
    return f"{spec['name']}({params})" if params else str(spec["name"])


@click.command()
@root_argument
@click.option("-q", "--quiet", is_flag=True, help="Print problems only.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None, help="Shards checked in parallel. [default: CPU count]")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (keys ok, shards, groups, problems); exit 1 when not ok.")
def verify(root: str, quiet: bool, jobs: int | None, as_json: bool) -> None:
    """Check every shard's sha256 and decode every group (one read per shard); exit 1 naming each bad shard."""
    from infer_data.verify import verify_dataset

    report = verify_dataset(root, jobs=jobs)
    if as_json:
        click.echo(json.dumps({"ok": report.ok, "shards": report.shards, "groups": report.groups, "problems": report.problems}))
        sys.exit(0 if report.ok else 1)
    for line in report.problems:
        click.echo(f"Error: {line}", err=True)
    if not report.ok:
        sys.exit(1)
    if not quiet:
        click.echo(f"OK: {report.shards} shards, {report.groups} groups verified (sha256 + decode)")
