"""Cluster layer: sessions, timers, service hosting (ConsensusModule) and the client session
logic (ClientCore), plus the node's configuration and operations modules.

Names are resolved lazily so importing a light submodule (``protocol``, ``config``) does not
pull in the whole layer.
"""
from importlib import import_module

_EXPORTS = {
    "ConsensusModule": "aeronpy.cluster.module",
    "ModuleState": "aeronpy.cluster.module",
    "ModuleConfig": "aeronpy.cluster.module_config",
    "Authenticator": "aeronpy.cluster.module_config",
    "SecretAuthenticator": "aeronpy.cluster.module_config",
    "Cluster": "aeronpy.cluster.container",
    "ServiceError": "aeronpy.cluster.container",
    "ClientSession": "aeronpy.cluster.sessions",
    "ClientCore": "aeronpy.cluster.client_core",
    "ClientConfig": "aeronpy.cluster.client_core",
    "ClientState": "aeronpy.cluster.client_core",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'aeronpy.cluster' has no attribute {name!r}")
    return getattr(import_module(module), name)
