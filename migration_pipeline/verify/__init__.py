"""Verification: read what was loaded back from amoCRM, and report where every record ended."""
