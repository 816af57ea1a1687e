"""`python -m provisioner.cli` runs the `bas` command."""

from provisioner.cli.main import main

main()
