"""Errors the client raises."""

import grpc


class CraftError(Exception):
    """A call failed: `code` is the grpc.StatusCode, `details` the server's message."""

    def __init__(self, method, code, details):
        self.method = method
        self.code = code
        self.details = details or ""
        name = code.name if isinstance(code, grpc.StatusCode) else str(code)
        super().__init__("%s: %s: %s" % (method, name, self.details))

    @classmethod
    def from_rpc_error(cls, method, error):
        code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
        details = error.details() if hasattr(error, "details") else str(error)
        return cls(method, code, details)
