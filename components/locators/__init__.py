"""Built-in model locators (server models for cross-site evaluation)."""
