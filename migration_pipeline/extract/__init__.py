"""Extraction: every Pipedrive entity a migration needs, page by page, into DuckDB ``raw.*``."""
