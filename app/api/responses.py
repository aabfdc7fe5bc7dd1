"""A pydantic model as the response, serialized once.

Routes that return a model instance make FastAPI validate it against `response_model` again and
then serialize it: the prediction routes return `ModelJSON` instead, and keep `response_model`
for the OpenAPI schema only. The models were validated when they were built.
"""

from fastapi import Response
from pydantic import BaseModel


class ModelJSON(Response):
    media_type = "application/json"

    def __init__(self, model: BaseModel, status_code: int = 200):
        super().__init__(
            model.__pydantic_serializer__.to_json(model, exclude_none=True), status_code
        )
