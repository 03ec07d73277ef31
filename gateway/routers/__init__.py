"""The gateway's routes: operations (health, readiness, models, cards) and one pair per task (classify, explain)."""

from fastapi.routing import APIRoute


def operation_id(route: APIRoute) -> str:
    """OpenAPI operation ids are the route names (`classify_sentiment`, `list_models`): generated clients name
    their functions after them, so they are kept short instead of FastAPI's `name_path_method` default."""
    return route.name
