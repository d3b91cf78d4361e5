"""Cluster mode: several machines sharing a PostgreSQL ledger, a Procrastinate queue and an object store."""
