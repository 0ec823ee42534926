"""``python -m syphus.cli``: the same command line as the ``syphus`` console script."""

from syphus.cli import main

main()
