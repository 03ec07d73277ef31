"""`python -m modelops`: the same CLI as the `modelops` console script."""

from modelops.cli import main

main()
