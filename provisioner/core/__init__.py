"""The pure core: source records in, desired state, plans and safety decisions out; no I/O."""
