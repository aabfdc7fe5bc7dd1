"""One router per resource; `model_routes.ModelRoutes` builds each version's typed routes."""
