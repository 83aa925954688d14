from clerk.cli import cli

cli()
