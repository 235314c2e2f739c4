"""Fixtures for the moto S3 server (filled in by the S3 work)."""
