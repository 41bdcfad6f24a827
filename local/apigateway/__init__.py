"""API Gateway (REST API, Lambda proxy integration) emulation: see ``server.ApiGatewayServer``."""

from local.apigateway.gateway import DEFAULT_INTEGRATION_TIMEOUT
from local.apigateway.server import ApiGatewayServer
from local.errors import PortInUseError

__all__ = ["DEFAULT_INTEGRATION_TIMEOUT", "ApiGatewayServer", "PortInUseError"]
