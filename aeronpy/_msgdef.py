"""A small factory for message classes: ``__slots__``, a positional/keyword ``__init__``
generated once at import (as fast as a hand-written one), value equality and a readable repr.

Message classes are plain Python so the sans-I/O core stays pure; ``aeronpy._codec`` encodes
and decodes them on the wire.
"""
from __future__ import annotations


def message_class(name: str, type_id: int, fields: str, defaults: dict | None = None, doc: str = ""):
    names = fields.split()
    defaults = defaults or {}
    params = ", ".join(f"{f}={defaults[f]!r}" if f in defaults else f for f in names)
    body = "".join(f"    self.{f} = {f}\n" for f in names) or "    pass\n"
    namespace: dict = {}
    exec(f"def __init__(self, {params}):\n{body}", namespace)  # noqa: S102 - generated from literals above

    def __eq__(self, other):
        return type(self) is type(other) and all(getattr(self, f) == getattr(other, f) for f in names)

    def __repr__(self):
        return f"{name}(" + ", ".join(f"{f}={getattr(self, f)!r}" for f in names) + ")"

    def astuple(self):
        return tuple(getattr(self, f) for f in names)

    cls = type(name, (), {
        "__slots__": tuple(names), "__init__": namespace["__init__"], "__eq__": __eq__,
        "__hash__": None, "__repr__": __repr__, "astuple": astuple,
        "TYPE_ID": type_id, "FIELDS": tuple(names), "__doc__": doc,
    })
    return cls
