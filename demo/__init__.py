"""The demo and test data generator: a synthetic SIS in SQLite."""
