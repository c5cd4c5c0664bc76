"""Uploaders that push an evidence folder to a GRC platform (Vanta so far)."""
