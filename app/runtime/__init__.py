"""Layer 2, runtime: one loaded SavedModel (`ModelRuntime`), the registry of versions, and the
dynamic batcher that calls a version. Knows TensorFlow and the card; no HTTP."""
