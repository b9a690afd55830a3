"""The `infer` click group: registers the commands and maps InferError to a one-line exit 1.

Each command lives in its own module of this package and is imported lazily on first use, so
`infer --help` and the inspection commands start fast.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

import click

# command name -> (module in this package, attribute, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "info": ("inspect", "info", "What a distilled dataset is: counts, codecs, provenance."),
    "verify": ("inspect", "verify", "Check every shard's sha256 and decode every group."),
    "stats": ("stats", "stats", "Exact stored bytes by field and compression ratios."),
    "export": ("export", "export", "Materialize instances as image files plus a labels file."),
    "preview": ("preview", "preview", "Draw one group: bases, compensators, composites."),
    "bench": ("bench", "bench", "Loader throughput against the ImageFolder baseline."),
    "demo": ("demo", "demo", "The whole pipeline on the embedded dataset in minutes: teachers, INFER, student, baseline."),
    "distill": ("distill", "distill", "Distill a dataset with INFER: compensators + static labels -> shards (resumable)."),
    "teacher": ("teacher", "teacher", "Train teacher checkpoints (`infer teacher train`)."),
    "evaluate": ("evaluate", "evaluate", "Train a student on a distilled set; report real test top-1 (static or dynamic labels)."),
    "cache": ("cache", "cache", "List and clear cached datasets: URL mirrors, stream caches, decoded groups (`ls`, `clear`)."),
    "card": ("card", "card", "Regenerate a dataset folder's README.md card (name, licence, bytes, ratios, how to load)."),
    "import": ("import_", "import_", "Pack another method's distilled image folder (any count per class, JPEGs as they are) with M = 0."),
    "plan": ("plan", "plan", "Before any work: G, instances, stored images, bytes by field per codec, compression ratios."),
}


def _package() -> str:
    return __name__.rsplit(".", 1)[0]


class LazyGroup(click.Group):
    """A click group whose subcommands are imported only when invoked."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[name]
        return getattr(importlib.import_module(f"{_package()}.{module}"), attr)  # type: ignore[no-any-return]

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        from infer_data.errors import InferError

        try:
            return super().invoke(ctx)
        except InferError as exc:
            raise click.ClickException(str(exc)) from exc


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="infer-data")
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
def main(verbose: int) -> None:
    """Format, loader and producer for INFER-distilled datasets."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
