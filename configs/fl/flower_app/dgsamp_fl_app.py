"""Entry points of the Flower App: dgsamp's ServerApp and ClientApp (dgsamp.federated.app)."""

from dgsamp.federated.app import client_app, server_app

__all__ = ["client_app", "server_app"]
