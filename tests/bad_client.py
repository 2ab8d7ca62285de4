"""A misbehaving fedad node for integration tests and bench/hostile.py: the ordinary ``FedadClient`` over
real gRPC, honest in every phase except the ones its ``--kind`` spoils. ``--kind a,b,c``: training kinds
are used one per training round in that order (the last one then for good); the other kinds apply in their
phase throughout. --start-round delays the training kinds.

Kinds (``KINDS``):
  zero-count    a zero model claiming num_examples = 1e18 (FedAvg's weight of that node)
  scaled        its update multiplied by 1e6
  huge          weights near the top of float32 (3e38): finite, but any sum overflows
  int64         weights sent as int64 arrays
  nan           a NaN in its weights
  big           one extra 40 MB tensor (the server's message limit is derived from the model)
  replay        from its second training round on, the previous round's answer bit for bit
  metric-type   a string where train_loss belongs
  features      a malformed feature list at the statistics phase (its node is refused)
  no-hist       no histogram in the threshold phase
  hist-poison   invented histogram counts (all validation weight at the top score bin)
  count-string  a string where a confusion count (tp) belongs in the test phase
  pai-range     Paillier: valid ciphertexts of out-of-range values (past the slot width)
  pai-clip      Paillier: every weight at the clip value, claiming 1e7 examples
  idle          --connections gRPC streams that join and never answer (no data, no model)

    python tests/bad_client.py --kind KIND --server HOST:PORT --data shard.csv --name NAME [--private-key K]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

KINDS = (
    "zero-count",
    "scaled",
    "huge",
    "int64",
    "nan",
    "big",
    "replay",
    "metric-type",
    "features",
    "no-hist",
    "hist-poison",
    "count-string",
    "pai-range",
    "pai-clip",
    "idle",
)
FIT_KINDS = ("zero-count", "scaled", "huge", "int64", "nan", "big", "replay", "metric-type", "pai-range", "pai-clip")


def idle_connections(address: str, n: int, seconds: float) -> None:
    """Open ``n`` Flower connections that receive instructions and never answer them, for ``seconds``."""
    import threading

    import flwr

    from fedad.server.transport import configure_flower_logging

    configure_flower_logging("idle")

    class Silent(flwr.client.NumPyClient):
        def __init__(self) -> None:
            self.contacted = threading.Event()

        def get_parameters(self, config):
            self.contacted.set()
            time.sleep(seconds)
            return []

        def fit(self, parameters, config):
            self.contacted.set()
            time.sleep(seconds)
            return [], 1, {}

        def evaluate(self, parameters, config):
            self.contacted.set()
            time.sleep(seconds)
            return 0.0, 1, {}

    deadline = time.monotonic() + seconds

    def connect():
        silent = Silent()
        while time.monotonic() < deadline:  # until the server is up; once it has talked to us, never again
            try:
                flwr.client.start_client(server_address=address, client=silent.to_client(), insecure=True)
            except Exception:  # noqa: BLE001 - refused (not up yet) or dropped by the server
                pass
            if silent.contacted.is_set():
                return
            time.sleep(0.5)

    threads = [threading.Thread(target=connect, daemon=True) for _ in range(n)]
    for t in threads:
        t.start()
    print(f"idle: {n} connections to {address}", flush=True)
    time.sleep(seconds)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kind", required=True, help=f"comma-separated, of {', '.join(KINDS)}")
    p.add_argument("--server", required=True)
    p.add_argument("--data", default=None)
    p.add_argument("--name", default="mallory")
    p.add_argument("--private-key", default=None, help="Paillier: the plant's private.key")
    p.add_argument("--start-round", type=int, default=1, help="misbehave from this training round on")
    p.add_argument("--connections", type=int, default=10, help="idle: streams to open")
    p.add_argument("--hold", type=float, default=600.0, help="idle: seconds to hold them")
    p.add_argument("--connect-timeout", type=float, default=120.0)
    p.add_argument("--wait-for", default=None, metavar="FILE", help="connect once this file exists")
    args = p.parse_args(argv)
    kinds = args.kind.split(",")
    if set(kinds) - set(KINDS):
        p.error(f"unknown kind(s) {sorted(set(kinds) - set(KINDS))}")
    if kinds == ["idle"]:
        while args.wait_for and not os.path.exists(args.wait_for):
            time.sleep(0.1)
        idle_connections(args.server, args.connections, args.hold)
        return 0

    import numpy as np

    from fedad.client.flower_client import FedadClient
    from fedad.client.site import Site
    from fedad.common.data import load_dataset
    from fedad.common.federated_stats import N_BINS, encode_histogram
    from fedad.common.logs import setup_logging
    from fedad.server.transport import configure_flower_logging, connect

    log = setup_logging(f"bad client {args.name}")
    configure_flower_logging(f"bad client {args.name}")
    secure = None
    if args.private_key:
        from fedad.client.secure import SecureClient

        secure = SecureClient(args.private_key)
    fit_kinds = [k for k in kinds if k in FIT_KINDS]

    class BadClient(FedadClient):
        fits = 0
        previous = None

        def fit(self, parameters, config):
            weights, examples, metrics = super().fit(parameters, config)
            phase = config.get("phase", "fit")
            if phase == "stats" and "features" in kinds:
                log.warning("sending a malformed feature list")
                return weights, examples, {**metrics, "features": '{"not": "a list"'}
            if phase != "fit":
                return weights, examples, metrics
            if int(config.get("round", 0)) < args.start_round:
                return weights, examples, metrics
            self.fits += 1
            if fit_kinds == ["replay"]:
                kind = "replay"
            elif fit_kinds:  # one per round in order, then the last one for good
                kind = fit_kinds[min(self.fits, len(fit_kinds)) - 1]
            else:
                return weights, examples, metrics
            log.warning("round %s: misbehaving (%s)", config.get("round"), kind)
            if kind == "zero-count":
                return [np.zeros_like(w) for w in weights], 10**18, metrics
            if kind == "scaled":
                return [g + (w - g) * 1e6 for w, g in zip(weights, parameters, strict=True)], examples, metrics
            if kind == "huge":
                return [np.full_like(w, 3e38) for w in weights], examples, metrics
            if kind == "int64":
                return [np.round(w * 1000).astype(np.int64) for w in weights], examples, metrics
            if kind == "nan":
                bad = [w.copy() for w in weights]
                bad[0].flat[0] = np.nan
                return bad, examples, metrics
            if kind == "big":
                return [*weights, np.zeros(10_000_000, np.float32)], examples, metrics
            if kind == "replay":
                out = self.previous if self.previous is not None else weights
                self.previous = weights if self.previous is None else self.previous
                return out, examples, metrics
            if kind == "metric-type":
                return weights, examples, {**metrics, "train_loss": "low"}
            if kind == "pai-range":
                return [spoil_paillier(self.site.last_weights, config, secure)], examples, metrics
            if kind == "pai-clip":
                clipped = [np.full_like(w, float(config["clip"])) for w in self.site.last_weights]
                return [secure.encrypt_weights(clipped, config)], 10**7, metrics
            return weights, examples, metrics

        def evaluate(self, parameters, config):
            loss, n, metrics = super().evaluate(parameters, config)
            phase = config.get("phase", "val")
            if phase == "threshold" and "no-hist" in kinds:
                return loss, n, {k: v for k, v in metrics.items() if k not in ("hist", "hist_enc")}
            if phase == "threshold" and "hist-poison" in kinds and "hist" in metrics:
                h = np.zeros(N_BINS, np.int64)
                h[-1] = n
                return loss, n, {**metrics, "hist": encode_histogram(h)}
            if phase == "test" and "count-string" in kinds and "tp" in metrics:
                return loss, n, {**metrics, "tp": str(metrics["tp"])}
            return loss, n, metrics

    site = Site(load_dataset(args.data), device="cpu")
    train = site.train

    def remember(*a, **k):  # keep the plaintext weights of the last local training (pai-range)
        out = train(*a, **k)
        site.last_weights = out["weights"]
        return out

    site.train = remember
    client = BadClient(site, args.name, log, None, secure)
    log.info("misbehaving client: %s", ", ".join(kinds))
    if args.wait_for:  # everything is loaded: connect as soon as the file appears
        while not os.path.exists(args.wait_for):
            time.sleep(0.1)
    connect(args.server, client.to_client(), None, args.connect_timeout, client.contact, log)
    return 0


def spoil_paillier(weights, config: dict, secure):
    """Valid ciphertexts under the plant's key of values just past the slot width (no range proof stops it)."""
    import numpy as np

    from fedad.common.crypto.codec import encode_message
    from fedad.common.crypto.update import flatten_arrays, slot_layout

    pub = secure.public_key
    layout = slot_layout(pub, int(config["bits"]), int(config["max_sum"]))
    n_values = flatten_arrays(weights).size
    too_wide = 1 << (layout.slots_per_block * layout.slot_bits + 4)
    cts = [pub.raw_encrypt(too_wide) for _ in range(layout.blocks_for(n_values))]
    return np.frombuffer(encode_message(pub, cts, layout, n_values), dtype=np.uint8)


if __name__ == "__main__":  # the crypto pool uses forkserver: keep the entry point guarded
    sys.exit(main())
