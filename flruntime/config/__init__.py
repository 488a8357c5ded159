"""Reading job folders: files and their positions, schemas, variables and component specs."""
