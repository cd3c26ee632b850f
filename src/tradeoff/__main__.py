"""`python -m tradeoff`, which torchrun starts in each process: `torchrun --nproc-per-node 2 -m tradeoff train`."""

from tradeoff.cli import app

app()
