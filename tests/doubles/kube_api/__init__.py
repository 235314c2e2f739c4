"""A Kubernetes API server double for tests: faithful enough that the official Python client and the real
kubectl work against it unchanged. See server.KubeDouble for the test hooks."""
from .handler import RecordedRequest
from .server import KubeDouble

__all__ = ["KubeDouble", "RecordedRequest"]
