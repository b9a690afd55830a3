"""`infer bench`."""

from __future__ import annotations

import json

import click

from .options import root_argument


@click.command()
@root_argument
@click.option("--batch-size", default=256, show_default=True)
@click.option("--workers", default="0,2", show_default=True, help="Comma-separated DataLoader worker counts.")
@click.option("--device", default="cpu", show_default=True, help="Device of the GPU-resident loader.")
@click.option("--epochs", default=2, show_default=True, help="Timed epochs per measurement (after one warm-up).")
@click.option("--threads", type=int, default=None, help="torch intra-op threads in this process [default: torch's].")
@click.option("--no-baseline", is_flag=True, help="Skip the ImageFolder baseline (no export).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def bench(root: str, batch_size: int, workers: str, device: str, epochs: int, threads: int | None, no_baseline: bool,
          as_json: bool) -> None:
    """Loader throughput of ROOT: InferDataset, DeviceLoader and the ImageFolder baseline."""
    from infer_data.benchmark import bench_dataset
    from infer_data.errors import ConfigError

    try:
        counts = tuple(int(w) for w in workers.split(","))
    except ValueError:
        raise ConfigError(f"--workers {workers!r}: give comma-separated integers such as 0,2") from None
    if batch_size < 1 or epochs < 1 or min(counts) < 0:
        raise ConfigError("--batch-size and --epochs must be >= 1 and --workers >= 0")
    if threads is not None:
        import torch

        if threads < 1:
            raise ConfigError(f"--threads {threads}: give at least 1")
        torch.set_num_threads(threads)
    r = bench_dataset(root, batch_size=batch_size, workers=counts, device=device, epochs=epochs, baseline=not no_baseline)
    if as_json:
        click.echo(json.dumps(r, indent=1))
        return
    click.echo(f"{root}: {r['instances']} instances, batch {batch_size} (instances/s; ratio to ImageFolder)")
    for name, per in r["rates"].items():
        for w, rate in per.items():
            ratio = r.get("ratios", {}).get(name, {}).get(w)
            click.echo(f"  {name:<12} workers={w}: {rate:>10,.0f}/s" + (f"  {ratio:.2f}x" if ratio else ""))
    for dev, rate in r["device"].items():
        click.echo(f"  {'device':<12} {dev:<9}: {rate:>10,.0f}/s")
