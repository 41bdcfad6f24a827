"""Errors a user can cause and must see as one clear line (the CLI prints str(error), no traceback)."""


class LocalRuntimeError(Exception):
    """Base of every user-facing runtime error."""


class TemplateError(LocalRuntimeError):
    """The template cannot be loaded as AWS would load it (YAML, parameters, transform, intrinsics)."""


class PortInUseError(LocalRuntimeError):
    """A port the runtime must listen on is taken."""

    def __init__(self, what: str, host: str, port: int) -> None:
        super().__init__(
            f"{what} cannot listen on {host}:{port}: the port is in use (choose another with a flag)"
        )
        self.host = host
        self.port = port
