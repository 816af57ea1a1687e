"""The long-running service and its reports: daemon, metrics, alerts, status, explain, changelog."""
