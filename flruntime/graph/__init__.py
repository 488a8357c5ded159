"""From resolved config specs to live objects: class location, references, checks and building."""
