"""Built-in text plugin (being written)."""
