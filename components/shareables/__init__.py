"""Built-in shareables."""
