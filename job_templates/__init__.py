"""Runnable job templates, shipped as package data (one folder per template)."""
