"""User-facing errors: one line that names the file, line or argument at fault."""


class HonedError(Exception):
    """An error caused by user input or environment, printed as one line by the CLI.

    Example:
        >>> raise HonedError("corpus.jsonl:3: invalid JSON")  # doctest: +SKIP
    """


class DataError(HonedError):
    """A dataset file is malformed or inconsistent."""


class ModelNotFoundError(HonedError):
    """A model reference could not be resolved to a folder, package or hub id."""


class IndexMismatchError(HonedError):
    """An index was opened with a model it was not built with."""
