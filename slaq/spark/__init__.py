"""Spark integration: local standalone cluster lifecycle and the live engine."""
