"""Production code of the blob-to-Kusto function app: everything `function_app.py` hands work to."""
