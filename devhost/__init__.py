"""Dev-only local host: runs function_app.py's functions against Azurite and the Kusto emulator.

Nothing in production (`function_app.py`, `shared/`) imports this package.
"""
