"""Plain httpx clients for the two CRMs; their errors live in :mod:`.errors`."""
