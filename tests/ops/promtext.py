"""A strict little parser of the Prometheus text format (0.0.4), used to read metrics back."""
import re

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (-?[0-9]+(?:\.[0-9]+)?(?:e[+-]?[0-9]+)?)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')


def _unescape(text):
    return re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m.group(1), m.group(1)), text)


def parse(text):
    """-> {metric: {"type", "help", "samples": [(labels dict, float)]}}; raises ValueError."""
    if not text.endswith("\n"):
        raise ValueError("exposition must end with a newline")
    families = {}
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("# HELP "):
            name, _, help_text = line[7:].partition(" ")
            families.setdefault(name, {"samples": []})["help"] = _unescape(help_text)
        elif line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            if kind not in ("counter", "gauge", "histogram", "summary", "untyped"):
                raise ValueError(f"line {number}: bad type {kind!r}")
            family = families.setdefault(name, {"samples": []})
            if family["samples"] or "type" in family:
                raise ValueError(f"line {number}: TYPE for {name} after its samples or twice")
            family["type"] = kind
        elif line.startswith("#") or not line.strip():
            continue
        else:
            m = _SAMPLE.match(line)
            if not m:
                raise ValueError(f"line {number}: not a sample: {line!r}")
            name, _, raw_labels, value = m.groups()
            labels = {}
            rest = raw_labels or ""
            while rest:
                lm = _LABEL.match(rest)
                if not lm:
                    raise ValueError(f"line {number}: bad labels {raw_labels!r}")
                labels[lm.group(1)] = _unescape(lm.group(2))
                rest = rest[lm.end():]
            if name not in families or "type" not in families[name]:
                raise ValueError(f"line {number}: sample {name} before its TYPE")
            number_value = int(value) if re.fullmatch(r"-?[0-9]+", value) else float(value)
            families[name]["samples"].append((labels, number_value))
    return families
