"""What the API accepts (``requests``: validation rules, one per field) and returns
(``responses``) for emails. Field names are camelCase on the wire."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class CamelSchema(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)
