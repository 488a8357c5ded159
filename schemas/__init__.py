"""JSON Schema (Draft 2020-12) files for job folders, shipped as package data."""
