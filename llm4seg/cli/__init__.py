"""The `llm4seg` command line: one module per command, wired in main.py."""
