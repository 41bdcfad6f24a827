"""GET /swagger (Swagger UI, or the OpenAPI document with ``?format=json``), built only when asked for.

Powertools' ``enable_swagger`` imports its OpenAPI pydantic models (~0.1-0.25 s) when the route is declared,
i.e. during every cold start, although no payment request needs them. This route imports them, and builds
the schema from the resolver's routes, on the first /swagger request; the answers are the same.
"""

from __future__ import annotations

from pathlib import Path

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response

_DEFAULT_CONTENT_TYPE = "application/json"


def register(app: APIGatewayRestResolver, *, path: str, title: str, version: str) -> None:
    @app.get(path, include_in_schema=False)
    def swagger() -> Response[str]:
        query = app.current_event.query_string_parameters or {}
        if query.get("format") == "oauth2-redirect":
            from aws_lambda_powertools.event_handler.openapi.swagger_ui import generate_oauth2_redirect_html

            return Response(status_code=200, content_type="text/html", body=generate_oauth2_redirect_html())
        spec = openapi_json(app, title=title, version=version)
        if query.get("format") == "json":
            return Response(status_code=200, content_type=_DEFAULT_CONTENT_TYPE, body=spec)
        return Response(status_code=200, content_type="text/html", body=_html(spec))


def openapi_json(app: APIGatewayRestResolver, *, title: str, version: str) -> str:
    """The OpenAPI document as Powertools' own swagger route renders it (``</`` escaped for the page)."""
    from aws_lambda_powertools.event_handler.openapi.compat import model_json
    from aws_lambda_powertools.event_handler.openapi.models import Server

    servers = [Server(url=app._get_base_path() or "/")]  # what enable_swagger uses when given no servers
    spec = app.get_openapi_schema(title=title, version=version, servers=servers)
    text: str = model_json(spec, by_alias=True, exclude_none=True, indent=2)
    return text.replace("</", "<\\/")


def _html(escaped_spec: str) -> str:
    from aws_lambda_powertools.event_handler import api_gateway
    from aws_lambda_powertools.event_handler.openapi.swagger_ui import generate_swagger_html

    assets = Path(api_gateway.__file__).parent / "openapi" / "swagger_ui"
    js = (assets / "swagger-ui-bundle.min.js").read_text(encoding="utf-8")
    css = (assets / "swagger-ui.min.css").read_text(encoding="utf-8")
    body = generate_swagger_html(escaped_spec, js, css, "", None, False)
    return body
