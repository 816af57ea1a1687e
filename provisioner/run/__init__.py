"""Runs: a sync or a reconcile from source to executor, with recovery and currency checks."""
