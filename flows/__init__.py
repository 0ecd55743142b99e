"""Prefect flows: orchestration only (no HTTP, SQL or storage calls in a flow body)."""
