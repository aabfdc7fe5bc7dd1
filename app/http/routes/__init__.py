"""One router per resource; `model_routes.ModelRoutes` serves each version's typed routes,
built from its card by `typed`."""
