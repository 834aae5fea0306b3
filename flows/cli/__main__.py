"""``python -m flows.cli``: the ``dexlite`` command."""

from flows.cli import main

main()
