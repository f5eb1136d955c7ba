"""Cleansing: pure functions over values (phones, e-mails, names, money, selection rules) and
the runners that apply them to DuckDB tables with the SQL in ``sql/cleanse/``.

Nothing here imports Dagster; ``defs/cleanse`` wires these functions into assets.
"""
