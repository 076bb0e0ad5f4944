"""uvicorn's httptools protocol, letting go of its parser once a connection is a websocket (kairos.push.http_protocol)."""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class UpgradingHttpToolsProtocol(HttpToolsProtocol):
    def handle_websocket_upgrade(self) -> None:
        super().handle_websocket_upgrade()
        # Nothing reads it after an upgrade: data_received returns once this does.
        self.parser = None
