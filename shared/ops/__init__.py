"""The operator command, `python -m shared.ops <command>`: backfill, status and replay (`shared.ops.cli`).

Product code like the rest of `shared/`, but never imported by `function_app.py`: it runs on an operator's
machine (or in the local stack), with the app's settings and identity, and acts through the same functions the
triggers use, so what it records or moves is handled exactly as if the app had done it.
"""
