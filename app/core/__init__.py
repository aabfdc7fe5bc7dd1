"""Layer 0, core: settings from the environment, the one error hierarchy, logging. Pure Python:
no TensorFlow, no HTTP; every other layer may import it."""
