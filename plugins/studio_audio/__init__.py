"""Built-in audio plugin (being written)."""
