"""What the upstream double and the load generator agree on: the stream parameters."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

# The parameters travel inside the request as `[bench n=50 gap=20 ...]`: in the
# prompt of an /optimize-stream body, which a gateway forwards in its own body
# (split mode) or inside the chat messages it builds (in-process mode), or in a
# chat message for an OpenAI-shaped request. Every relay passes it through.
MARKER = re.compile(rb"\[bench ([a-z0-9=. _-]{1,200})\]")

# Hard bounds: the double refuses anything beyond them.
MAX_CHUNKS = 100_000
MAX_GAP_MS = 60_000.0
MAX_DELAY_MS = 60_000.0
MAX_HOLD_S = 120.0


@dataclass(slots=True)
class StreamSpec:
    """One stream, as the upstream double will produce it.

    n: content chunks; gap: ms between chunks; delay: ms before the first one.
    hold: when > 0, ignore `n` and send a chunk every `gap` ms until `hold`
    streams of the same `grp` are open at once (or `maxhold` s have passed),
    then `linger` ms more, then finish: a barrier that holds many streams open
    concurrently however fast the relay in between can open them.
    """

    n: int = 50
    gap: float = 0.0
    delay: float = 0.0
    hold: int = 0
    grp: str = ""
    linger: float = 0.0
    maxhold: float = 60.0

    def marker(self) -> str:
        parts = [f"n={self.n}", f"gap={self.gap:g}", f"delay={self.delay:g}"]
        if self.hold:
            parts += [f"hold={self.hold}", f"grp={self.grp}", f"linger={self.linger:g}",
                      f"maxhold={self.maxhold:g}"]
        return "[bench " + " ".join(parts) + "]"

    @classmethod
    def parse(cls, text: bytes) -> StreamSpec | None:
        """The spec of the first marker in `text` (or of `k=v&k=v` query text), else None."""
        match = MARKER.search(text)
        if match is not None:
            pairs = match.group(1).split()
        elif b"=" in text:
            pairs = text.split(b"&")
        else:
            return None
        spec = cls()
        for pair in pairs:
            key, _, value = pair.partition(b"=")
            name = key.decode("ascii", "replace")
            try:
                if name in ("n", "hold"):
                    setattr(spec, name, int(value))
                elif name in ("gap", "delay", "linger", "maxhold"):
                    setattr(spec, name, float(value))
                elif name == "grp":
                    spec.grp = value.decode("ascii", "replace")[:64]
            except ValueError:
                return None
        if not (1 <= spec.n <= MAX_CHUNKS and 0 <= spec.gap <= MAX_GAP_MS
                and 0 <= spec.delay <= MAX_DELAY_MS and 0 <= spec.hold <= 1_000_000
                and 0 <= spec.linger <= MAX_HOLD_S * 1000 and 0 < spec.maxhold <= MAX_HOLD_S):
            return None
        return spec


def check_loopback(host: str) -> None:
    """Benchmarks talk to this machine only."""
    if host == "localhost":
        return
    if not ipaddress.ip_address(host).is_loopback:
        raise SystemExit(f"refusing {host}: the benchmark uses loopback addresses only")


# What each content chunk carries, so the generator can check order and count:
# `~k00042~` in content chunk 42, `~e00050~` in the final chunk (the count).
CHUNK_TAG = b"~k"
END_TAG = b"~e"
