"""`python -m provisioner.cli.main` runs the `bas` command."""

from provisioner.cli.main.main import main

main()
