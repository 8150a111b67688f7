"""`python -m bpnet` runs the command-line interface."""

from bpnet.cli import main

main()
