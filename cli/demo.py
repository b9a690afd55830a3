"""`infer demo`: the whole pipeline on the embedded dataset, minutes on a laptop CPU."""

from __future__ import annotations

import json

import click


@click.command()
@click.option("--out", default="runs/demo", show_default=True, type=click.Path(file_okay=False),
              help="Folder for teachers, the distilled dataset and the baseline (reused when run again).")
@click.option("--iterations", type=int, default=None, help="Compensator optimization steps. [default: 100]")
@click.option("--student-epochs", type=int, default=None, help="Student training epochs. [default: 30]")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the table.")
@click.option("-q", "--quiet", is_flag=True, help="No step messages on stderr; the table (or JSON) only.")
def demo(out: str, iterations: int | None, student_epochs: int | None, as_json: bool, quiet: bool) -> None:
    """Teachers -> INFER distillation (ipc 10) -> student, next to a random-real baseline."""
    from dataclasses import asdict, replace

    from infer_distill.demo import DemoConfig, run_demo

    cfg = DemoConfig()
    cfg = replace(cfg, iterations=iterations or cfg.iterations, student_epochs=student_epochs or cfg.student_epochs)
    say = (lambda msg: None) if as_json or quiet else (lambda msg: click.echo(msg, err=True))
    report = run_demo(out, cfg, say=say)
    if as_json:
        click.echo(json.dumps(asdict(report), indent=1))
        return
    src = report.source
    click.echo("")
    teachers = ", ".join(f"{t['arch']} ({t['top1']:.1f}%)" for t in report.teachers)
    click.echo(f"Embedded Fashion-MNIST subset: {src['images']:,} train images, {src['bytes']:,} bytes raw; teachers {teachers}")
    header = (f"{'dataset':<13}{'stored imgs':>12}{'instances':>11}{'stored bytes':>14}{'bytes/train':>13}"
              f"{'imgs/train':>12}{'JPEG layout':>13}{'epochs':>8}{'steps':>7}{'student top-1':>15}")
    click.echo(header)
    click.echo("-" * len(header))
    for r in report.rows:
        click.echo(f"{r.name:<13}{r.stored_images:>12}{r.instances:>11}{r.stored_bytes:>14,}{100 * r.bytes_ratio:>12.2f}%"
                   f"{100 * r.images_ratio:>11.2f}%{r.reference_bytes / r.stored_bytes:>12.2f}x{r.epochs:>8}{r.steps:>7}{r.top1:>14.2f}%")
    infer, same_epochs, same_steps = report.rows
    click.echo(f"INFER minus random real: {infer.top1 - same_epochs.top1:+.2f} points at equal epochs (the paper's fixed-epoch "
               f"protocol, where INFER's {infer.instances / same_epochs.instances:.1f}x instances also buy {infer.steps / max(1, same_epochs.steps):.0f}x "
               f"the optimizer steps), {infer.top1 - same_steps.top1:+.2f} points at equal optimizer steps (equal compute, the fair "
               "comparison; docs/producer.md, 'Large K', measures both at K = 10 and K = 200)")
    click.echo(f"(student: convnet, INFER protocol: crop+flip, MixUp without relabeling, KL to static labels; "
               f"final-epoch test accuracy on 1,000 held-out images; total {report.seconds:.0f} s)")
    click.echo("bytes/train, imgs/train: stored bytes and images over the raw embedded train split; JPEG layout: bytes the "
               "reference code's layout (one JPEG q75 file per instance + fp32 labels) would take, over the stored bytes")
    click.echo(f"distilled data kept in {out}/infer and {out}/random-real")
