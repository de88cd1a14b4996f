"""Local stand-in for the Kusto (Azure Data Explorer) ingestion service, backed by DuckDB. Dev-only.

Run it with `python -m kusto_emulator --help`. Production code never imports this package.
"""
