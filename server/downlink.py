"""The server's side of compressed downloads (`--compress`): broadcast versions and what each connection holds.

The math is in ``fedad.common.broadcast``; here: the exact and broadcast models across rounds, the one step
message per version (encoded once, sent to every node that holds its base), and per connection the
version it last reported holding. A connection that failed a call, or never reported, gets the full model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from flwr.common import Parameters, ndarrays_to_parameters, parameters_to_ndarrays

from fedad.common.broadcast import carry_update, choose_download, next_version, weights_digest
from fedad.server.client_calls import ClientCallFailed

MAX_VERSION = 2**31 - 1


class Downlink:
    """Broadcast versions of the global model and the version each connection (Flower cid) holds."""

    def __init__(self) -> None:
        self.version = 0  # the current broadcast version
        self.last = 0  # the highest version number ever given (never reused)
        self.broadcast: list[np.ndarray] = []  # B: exactly what the nodes hold
        self.exact: list[np.ndarray] = []  # X (float64): B plus what the codes have not carried yet
        self.step: tuple[int, Parameters] | None = None  # (base version, the step to ``version``) as sent
        self.versions: dict[str, int] = {}  # digest -> version, every version made (an older one may be sent again)
        self.holds: dict[str, int] = {}  # cid -> the version that connection last reported holding
        self._digest_of: tuple[Parameters, str, int] | None = None  # the last Parameters seen: its digest, version

    def start(self, weights: Sequence[np.ndarray], exact: Sequence[np.ndarray] | None = None, version: int = 0) -> None:
        """Version ``version`` is ``weights`` (new run: the initial model; resumed: the checkpoint's)."""
        self.version = self.last = int(version)
        self.broadcast = [np.asarray(w).copy() for w in weights]
        self.exact = [np.asarray(w, np.float64).copy() for w in (exact if exact is not None else weights)]
        self.step, self.holds, self._digest_of = None, {}, None
        self.versions = {weights_digest(self.broadcast): self.version}

    def advance(self, aggregated: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The next version from the strategy's new weights (aggregated around the current version)."""
        self.exact = carry_update(self.exact, self.broadcast, aggregated)
        message, new = next_version(self.exact, self.broadcast)
        base = self.version
        self.version = self.last = self.last + 1
        self.broadcast = new
        self.step = (base, ndarrays_to_parameters([np.frombuffer(message, dtype=np.uint8)]))
        self.versions[weights_digest(new)] = self.version
        return [w.copy() for w in new]

    def residual(self) -> float:
        """max |X - B|: what the next version will also carry."""
        return max((float(np.abs(x - b).max()) for x, b in zip(self.exact, self.broadcast, strict=True)), default=0.0)

    def _identify(self, parameters: Parameters) -> tuple[str, int]:
        """(digest, version) of a model the server is about to send; a model it never made gets a new version."""
        if self._digest_of is not None and self._digest_of[0] is parameters:
            return self._digest_of[1], self._digest_of[2]
        digest = weights_digest(parameters_to_ndarrays(parameters))
        if digest not in self.versions:
            self.last += 1
            self.versions[digest] = self.last
        self._digest_of = (parameters, digest, self.versions[digest])
        return digest, self.versions[digest]

    def dress(self, cid: str, parameters: Parameters, config: dict[str, Any]) -> tuple[Parameters, dict, str]:
        """(tensors, config, download kind) that bring connection ``cid`` to the model in ``parameters``."""
        digest, version = self._identify(parameters)
        base = self.step[0] if self.step is not None and version == self.version else None
        kind = choose_download(self.holds.get(cid), version, base)
        cfg = {**config, "model": kind, "model_version": version, "model_digest": digest}
        if kind == "held":
            return Parameters(tensors=[], tensor_type="numpy.ndarray"), cfg, kind
        if kind == "delta" and self.step is not None:
            return self.step[1], {**cfg, "model_base": self.step[0]}, kind
        return parameters, cfg, kind

    def note(self, results: list, failures: list) -> None:
        """Learn from answers which version each connection holds; a failed call holds nothing we can count on."""
        for proxy, res in results:
            reported = (res.metrics or {}).get("model_version")
            if isinstance(reported, int) and not isinstance(reported, bool) and 0 <= reported <= MAX_VERSION:
                self.holds[proxy.cid] = reported
            else:
                self.holds.pop(proxy.cid, None)
        for f in failures:
            proxy = f.proxy if isinstance(f, ClientCallFailed) else f[0] if isinstance(f, tuple) else None
            if proxy is not None:
                self.holds.pop(proxy.cid, None)

    def forget(self, cid: str) -> None:
        """A connection that ended (its node comes back as a new connection, with the full model)."""
        self.holds.pop(cid, None)
