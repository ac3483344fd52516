"""Readers for public data-set layouts (no downloading: the operator supplies the files)."""
