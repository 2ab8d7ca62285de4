"""A scripted edge node for integration tests: the real ``FedadClient`` over real gRPC, driven with what the
fedad-client CLI would refuse or cannot do.

  --name NAME      sent as is (no validation: a name with newlines or ../ tests the server's checks)
  --fit-sleep S    an honest node that takes S more seconds per training round (paces the rounds of a test)
  --tls CA CERT KEY  mutual TLS with this certificate, whatever its subject

    python tests/scripted_client.py --server HOST:PORT --data shard.csv --name NAME [--fit-sleep 2] [--tls ...]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--server", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--fit-sleep", type=float, default=0.0)
    p.add_argument("--tls", nargs=3, default=None)
    args = p.parse_args()
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    from fedad.client.flower_client import FedadClient
    from fedad.client.site import Site
    from fedad.common.data import load_dataset
    from fedad.common.errors import FedadError
    from fedad.server.transport import configure_flower_logging, connect, use_client_certificate

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    log = logging.getLogger("scripted")
    configure_flower_logging("scripted")
    ca = None
    if args.tls:
        ca = Path(args.tls[0]).read_bytes()
        use_client_certificate(Path(args.tls[1]).read_bytes(), Path(args.tls[2]).read_bytes())
    client = FedadClient(Site(load_dataset(args.data), device="cpu"), args.name, log)
    if args.fit_sleep:
        honest_fit = client.fit

        def slow_fit(parameters, config):
            if config.get("phase", "fit") == "fit":
                time.sleep(args.fit_sleep)
            return honest_fit(parameters, config)

        client.fit = slow_fit
    try:
        connect(args.server, client.to_client(), ca, 120.0, client.contact, log)
    except FedadError as exc:
        print(f"scripted client: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
