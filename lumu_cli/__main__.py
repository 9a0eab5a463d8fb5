"""`python -m lumu_cli`."""

from lumu_cli.cli import app

app(prog_name="lumu")
