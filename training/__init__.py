"""Training pipelines: one module per model, each exporting a SavedModel and a model card."""

from training import catdog, housing, iris, mnist

PIPELINES = {"iris": iris, "housing": housing, "mnist": mnist, "catdog": catdog}
