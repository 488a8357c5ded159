"""Built-in persistors."""
