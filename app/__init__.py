"""honed's user-facing layer: the `honed` command line (and the comparison app)."""
