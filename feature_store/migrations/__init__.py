"""Ordered SQL migration files, applied by :mod:`feature_store.schema`."""
