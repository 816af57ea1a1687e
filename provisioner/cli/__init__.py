"""The `bas` command line."""
