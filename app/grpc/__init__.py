"""The gRPC transport: KServe v2 and TF Serving gRPC, health and reflection."""
