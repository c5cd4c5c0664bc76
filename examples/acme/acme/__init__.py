"""Acme: a small support-automation service that keeps the claims Assay tests.

It stores OAuth tokens for six providers and webhook signing secrets as
AES-256-GCM envelopes (``acme.vault``), serves them only to server-side code,
and reads and writes customer data as the signed-in user so PostgreSQL's row
level security applies (``acme.db``).
"""
