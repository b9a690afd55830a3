"""The `infer` click group."""
import click


@click.group()
def main() -> None:
    """Format, loader and producer for INFER-distilled datasets."""
