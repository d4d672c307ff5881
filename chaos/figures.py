"""What a scenario measured, and the scan for leaked secrets."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

# A JWT's header and claims both start with base64url of '{"'.
_JWT = re.compile(rb"eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}")
_PEM = re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----")
_HEX_RUN = re.compile(rb"[0-9a-fA-F]{16,}")


@dataclass
class Figures:
    """One scenario's counts; `details` holds what is particular to it."""

    scenario: str
    requests: int
    lost: int
    duplicates: int
    leaked_secrets: int = 0
    details: dict[str, int | float | str] = field(default_factory=dict)


def count_leaks(
    texts: Iterable[bytes], tokens: Iterable[str], secrets: Iterable[bytes] = ()
) -> int:
    """Occurrences of JWTs, private keys, the given secrets and any of the given
    device tokens, whole, in the texts."""
    token_set = {token.lower().encode() for token in tokens}
    lengths = sorted({len(token) for token in token_set})
    secret_list = [secret for secret in secrets if secret]
    leaks = 0
    for text in texts:
        leaks += len(_JWT.findall(text)) + len(_PEM.findall(text))
        leaks += sum(text.count(secret) for secret in secret_list)
        for run in _HEX_RUN.findall(text):
            leaks += _holds_token(run.lower(), token_set, lengths)
    return leaks


def _holds_token(run: bytes, tokens: set[bytes], lengths: list[int]) -> bool:
    # A hex run may be longer than a token when glued to other hex characters.
    return any(
        run[start : start + length] in tokens
        for length in lengths
        for start in range(len(run) - length + 1)
    )


def log_texts(directory: Path) -> list[bytes]:
    return [path.read_bytes() for path in sorted(directory.glob("*.log"))]


def table(rows: list[Figures]) -> str:
    lines = [
        f"{'scenario':<18} {'requests':>9} {'lost':>5} {'dups':>5} {'leaks':>5}  details"
    ]
    for row in rows:
        details = " ".join(f"{key}={value}" for key, value in row.details.items())
        lines.append(
            f"{row.scenario:<18} {row.requests:>9} {row.lost:>5} {row.duplicates:>5} "
            f"{row.leaked_secrets:>5}  {details}"
        )
    return "\n".join(lines)


def summary(rows: list[Figures]) -> str:
    return (
        f"chaos: scenarios={len(rows)} lost={sum(r.lost for r in rows)} "
        f"duplicates={sum(r.duplicates for r in rows)} "
        f"leaked_secrets={sum(r.leaked_secrets for r in rows)}"
    )
