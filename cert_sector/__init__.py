"""Cert sector, manifest and verifier."""
