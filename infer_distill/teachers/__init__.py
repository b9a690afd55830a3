"""Teacher architectures, in a registry."""
