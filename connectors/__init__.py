"""Connectors: each turns planned changes for one target into that target's operations."""
