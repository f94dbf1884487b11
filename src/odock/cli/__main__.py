"""``python -m odock.cli``: the same command line as ``odock``."""

from odock.cli.main import main

main()
