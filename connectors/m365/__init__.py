"""The Microsoft 365 target: Graph client, pacing and connector."""
