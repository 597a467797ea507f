"""Built-in image plugin (being written)."""
