"""Loads Assay's check fixtures for pytest runs from this repository."""

pytest_plugins = ["assay.fixtures"]
