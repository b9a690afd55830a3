"""``python -m infer_cli``: the same command as ``infer`` (the folder ``cli/`` installs as ``infer_cli``)."""

from .main import main

if __name__ == "__main__":
    main(prog_name="infer")
