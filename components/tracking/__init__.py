"""Built-in experiment-tracking components: event forwarding and MLflow / TensorBoard / W&B receivers."""
