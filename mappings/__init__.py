"""Target mappings: pure functions from the desired state to each target's objects."""
