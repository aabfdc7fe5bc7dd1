"""Glassbox: a model-serving web API that shows its work."""
