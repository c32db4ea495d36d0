"""docs/wire-format.md must show the layout the codec really uses."""
import os
import re

from aeronpy import _codec as codec

DOC = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "wire-format.md")
WIRE_TYPES = {"i64": "i64", "i32": "i32", "u32": "u32", "bool": "u8 (0/1)", "str": "u16 length + UTF-8",
              "bytes": "u32 length + bytes", "entries": "u32 length + packed entries"}


def _doc_tables() -> dict:
    """{class name: [(offset, field, wire type), ...]} from the '#### id `Name`' tables."""
    with open(DOC, encoding="utf-8") as f:
        text = f.read()
    tables = {}
    for match in re.finditer(r"^#### (\d+) `(\w+)`\n\n(.*?)\n\n", text, re.S | re.M):
        rows = [line.strip("|").split("|") for line in match.group(3).splitlines()[2:]]
        tables[(int(match.group(1)), match.group(2))] = [tuple(cell.strip() for cell in row[:3]) for row in rows]
    return tables


def test_wire_format_doc_matches_the_codec_layouts():
    expected = {}
    for type_id, cls in codec.message_classes().items():
        rows, first_variable = [], True
        for name, kind, offset in codec.layout(cls):
            if offset is not None:
                rows.append((str(offset), name, WIRE_TYPES[kind]))
        fixed_end = 4 + sum({"i64": 8, "i32": 4, "u32": 4, "bool": 1}.get(k, 0) for _, k, _ in codec.layout(cls))
        for name, kind, offset in codec.layout(cls):
            if offset is None:
                rows.append((str(fixed_end) if first_variable else "next", name, WIRE_TYPES[kind]))
                first_variable = False
        expected[(type_id, cls.__name__)] = rows
    assert _doc_tables() == expected
