"""The HTTP layer: routers that translate HTTP into service calls and back."""
