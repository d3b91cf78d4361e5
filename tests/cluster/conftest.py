"""Cluster tests: the PostgreSQL and S3 fixtures come from tests/services.py (see tests/conftest.py)."""
