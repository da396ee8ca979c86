"""Network helpers shared by connectors that call outside systems."""
from __future__ import annotations

import fnmatch
from urllib.parse import urlsplit


def host_allowed(url: str, allowed: list[str]) -> bool:
    """True if the URL's host (and port, when the entry names one) matches an allow-list entry;
    entries are ``host``, ``host:port`` or ``*.domain``."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        return False
    host = parts.hostname.lower()
    port = parts.port or (443 if parts.scheme == "https" else 80)
    for entry in allowed:
        name, _, entry_port = entry.lower().rpartition(":") if ":" in entry else (entry.lower(), "", "")
        if entry_port and (not entry_port.isdigit() or int(entry_port) != port):
            continue
        if host == name or (name.startswith("*.") and fnmatch.fnmatch(host, name)):
            return True
    return False
