"""``python -m honed.app.cli``: the same as the ``honed`` command."""
from . import main

main()
