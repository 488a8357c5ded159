"""Built-in launchers: start and stop a training script as a separate process."""
