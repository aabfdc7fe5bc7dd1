"""One router per resource; `typed.ModelRoutes` builds each version's typed routes."""
