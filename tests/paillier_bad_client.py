"""A misbehaving Paillier peer for integration tests: a real fedad client process over real gRPC that
answers every phase honestly except training, where its k-th training round sends bad update kind k.

It is the ordinary ``FedadClient`` (real ``flwr.client.NumPyClient``, real keys, real encryption); only
the bytes of its fit answer are spoiled, so the server sees exactly what a buggy or hostile node would
send. Kinds, in the order of its training rounds (``KINDS``; past the last one it behaves honestly):

  range      one ciphertext replaced by n^2 (an integer, but not below n^2)
  layout     packed with another slot width (headroom) than the round announced: wrong slots per ciphertext
  count      one value short: the header's value count is not the model's
  key        encrypted under another public key (--other-key)
  truncated  the message cut short by 100 bytes
  plaintext  plain float32 weights instead of an encrypted message

    python tests/paillier_bad_client.py --server HOST:PORT --data shard.csv --name NAME \
        --private-key private.key --other-key other/public.key [--wait-for GO_FILE]

--wait-for: load everything, then connect only once GO_FILE exists (a test lets the honest clients in
first, so that the server's --min-clients counts honest clients only).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

KINDS = ("range", "layout", "count", "key", "truncated", "plaintext")


def spoil(kind: str, weights, config: dict, secure, other_public) -> list:
    """The bad answer of ``kind`` for this round, from the honest plaintext ``weights``."""
    import numpy as np

    from fedad.common.crypto.codec import HEADER_BYTES, ciphertext_bytes
    from fedad.common.crypto.update import encrypt_update, flatten_arrays, slot_layout

    pub, bits, clip = secure.public_key, int(config["bits"]), float(config["clip"])
    layout = slot_layout(pub, bits, int(config["max_sum"]))
    if kind == "plaintext":
        return weights
    if kind == "range":
        msg = bytearray(encrypt_update(pub, weights, clip, bits, layout, workers=1))
        width = ciphertext_bytes(pub)
        msg[HEADER_BYTES : HEADER_BYTES + width] = pub.nsquare.to_bytes(width, "big")
    elif kind == "layout":
        wide = slot_layout(pub, bits, 2 * int(config["max_sum"]) + 1)  # one more headroom bit per slot
        msg = encrypt_update(pub, weights, clip, bits, wide, workers=1)
    elif kind == "count":
        msg = encrypt_update(pub, [flatten_arrays(weights)[:-1]], clip, bits, layout, workers=1)
    elif kind == "key":
        other = slot_layout(other_public, bits, int(config["max_sum"]))
        msg = encrypt_update(other_public, weights, clip, bits, other, workers=1)
    elif kind == "truncated":
        msg = encrypt_update(pub, weights, clip, bits, layout, workers=1)[:-100]
    else:
        raise ValueError(f"unknown kind {kind}")
    return [np.frombuffer(bytes(msg), dtype=np.uint8)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--name", default="mallory")
    p.add_argument("--private-key", required=True)
    p.add_argument("--other-key", required=True, help="public.key of another key pair (for the 'key' kind)")
    p.add_argument("--connect-timeout", type=float, default=90.0)
    p.add_argument("--wait-for", default=None, metavar="FILE", help="connect once this file exists")
    args = p.parse_args(argv)

    from fedad.client.flower_client import FedadClient
    from fedad.client.secure import SecureClient
    from fedad.client.site import Site
    from fedad.common.crypto.keys import load_public_key
    from fedad.common.data import load_dataset
    from fedad.common.logs import setup_logging
    from fedad.server.transport import configure_flower_logging, connect

    log = setup_logging(f"bad client {args.name}")
    configure_flower_logging(f"bad client {args.name}")
    secure, other_public = SecureClient(args.private_key), load_public_key(args.other_key)

    class BadClient(FedadClient):
        fits = 0

        def fit(self, parameters, config):
            weights, examples, metrics = super().fit(parameters, config)
            if config.get("phase", "fit") != "fit":
                return weights, examples, metrics
            self.fits += 1
            if self.fits > len(KINDS):
                return weights, examples, metrics
            kind = KINDS[self.fits - 1]
            # the honest answer is already encrypted: spoil the plaintext weights of this round instead
            log.warning("round %s: sending a bad update (%s)", config.get("round"), kind)
            return spoil(kind, self.site.train_result_weights, config, secure, other_public), examples, metrics

    site = Site(load_dataset(args.data), device="cpu")
    train = site.train

    def remember(*a, **k):  # keep the plaintext weights of the last local training for spoil()
        out = train(*a, **k)
        site.train_result_weights = out["weights"]
        return out

    site.train = remember
    client = BadClient(site, args.name, log, None, secure)
    if args.wait_for:
        while not os.path.exists(args.wait_for):
            time.sleep(0.1)
    log.info("misbehaving Paillier client: kinds %s, one per round", ", ".join(KINDS))
    connect(args.server, client.to_client(), None, args.connect_timeout, client.contact, log)
    return 0


if __name__ == "__main__":  # the crypto pool uses forkserver: keep the entry point guarded
    sys.exit(main())
