"""Events: typed names and a per-engine bus with removable handles."""
