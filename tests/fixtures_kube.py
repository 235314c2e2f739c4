"""Fixtures for the Kubernetes API server double (filled in by the Kubernetes work)."""
