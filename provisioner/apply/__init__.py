"""Applying a plan: the executor and its worker processes."""
