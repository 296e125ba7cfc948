"""sanctum_services — the services of bus/bus_services.def, for Python.

The C table is the one list of Sanctum's services; this module reads it (and
bus/bus_config_keys.def, for which sections have which keys) so that the
tests and tools in Python never keep a list of their own.

    SERVICES      [Service(name, section, prefix, after_others, summary)], in start order
    by_name       {name: Service}
    section(n)    config section of a name or section ("ciba-broker" -> "ciba")
    config_keys() [(section, key, type, default)] of bus_config_keys.def
"""
import collections
import os
import re

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SERVICES_DEF = os.path.join(ROOT, "bus", "bus_services.def")
CONFIG_KEYS_DEF = os.path.join(ROOT, "bus", "bus_config_keys.def")

Service = collections.namedtuple("Service", "name section prefix after_others summary")

_SERVICE_RE = re.compile(r'^BUS_SERVICE\s*\(\s*"([a-z0-9-]+)"\s*,\s*([a-z_][a-z0-9_]*)\s*,'
                         r'\s*([a-z_][a-z0-9_]*)\s*,\s*(NONE|OTHERS)\s*,\s*"([^"]*)"\s*\)\s*$')
_KEY_RE = re.compile(r'^BUS_CONFIG_KEY\s*\(\s*([a-z_]+)\s*,\s*([a-z_]+)\s*,\s*([A-Z]+)\s*,\s*"([^"]*)"')


def load(path=SERVICES_DEF):
    """The entries of a services table, in order; ValueError on a line that
    starts an entry but does not parse, or on no entry at all."""
    out = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.startswith("BUS_SERVICE"):
                continue
            m = _SERVICE_RE.match(line.strip())
            if not m:
                raise ValueError("%s:%d: cannot parse %r" % (path, n, line.strip()))
            name, section, prefix, after, summary = m.groups()
            out.append(Service(name, section, prefix, after == "OTHERS", summary))
    if not out:
        raise ValueError("%s: no BUS_SERVICE entry" % path)
    return out


def config_keys(path=CONFIG_KEYS_DEF):
    """(section, key, type, default) of every configuration key."""
    with open(path) as f:
        return [m.groups() for m in map(_KEY_RE.match, f) if m]


SERVICES = load()
by_name = {s.name: s for s in SERVICES}


def section(name_or_section):
    """The config section of a service's name or section, or None."""
    for s in SERVICES:
        if name_or_section in (s.name, s.section):
            return s.section
    return None


def sections_with(key):
    """Sections of the services that have the given config key ("http")."""
    have = {sec for sec, k, _, _ in config_keys() if k == key}
    return [s.section for s in SERVICES if s.section in have]


if __name__ == "__main__":
    # `python3 ops/python/sanctum_services.py`: one "name section" per line
    for s in SERVICES:
        print(s.name, s.section)
