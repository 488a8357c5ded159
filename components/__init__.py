"""Built-in components (workflows, aggregators, executors, persistors, filters, widgets, receivers)."""
