"""The `infer` command line."""
