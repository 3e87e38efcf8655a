"""The 64-bit code of a vote's scenario, stored with every vote (``feedback.scenario_hash``).

The monitor tick groups a million votes by (kind, playbook, context); reading those three
strings per row costs most of the read, one integer does not. The code is a unkeyed
BLAKE2b digest of the three strings, so every replica and every migration computes the
same one without a lookup table. Never change it: stored codes depend on it. Zero is never
a code (the reader takes a zero for "stored without one"). Two scenarios sharing a code
would be read as one: about one chance in 10^11 with 10,000 distinct scenarios."""

from __future__ import annotations

import hashlib

_SEP = "\x1f"  # unit separator: JSON escapes it, kinds and playbook ids do not carry it


def scenario_hash(kind: str, playbook_id: str, context_json: str) -> int:
    """A signed 64-bit integer (a BIGINT on every database), never 0."""
    text = f"{kind}{_SEP}{playbook_id}{_SEP}{context_json}".encode()
    code = int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big", signed=True)
    return code or 1
