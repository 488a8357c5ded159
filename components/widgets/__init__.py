"""Built-in widgets."""
