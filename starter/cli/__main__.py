"""`python -m starter.cli ...`: the `abdr` command."""

from starter.cli.app import main

main()
