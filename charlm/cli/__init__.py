"""The command line: the command table, the parser of the checkpoint commands, one-line errors and exit
statuses, and one module per command (``cli/commands/``). ``charlm/__main__.py`` dispatches here."""
