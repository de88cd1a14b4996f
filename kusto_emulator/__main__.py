"""`python -m kusto_emulator`: see cli.py."""

from .cli import main

main()
