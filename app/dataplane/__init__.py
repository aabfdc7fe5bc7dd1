"""Layer 3, the data plane: the logic every protocol calls. Input arrays from requests, model
calls through the batchers, traces, hot reload and readiness. No HTTP."""
