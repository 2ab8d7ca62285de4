"""Make a Paillier key pair for encrypted aggregation: DIR/public.key and DIR/private.key.

public.key goes to the aggregator (the server): it can add encrypted updates but never decrypt one.
private.key (written with permissions 0600) goes to the clients under --strategy paillier, or only to
fedad-keyholder under --strategy secure-robust (clients then get public.key); the server refuses to start
if handed it. Key sizes: 2048 bits (default), 3072 bits (stronger, slower), 1024 bits for tests only
(below current recommendations). Existing keys are never overwritten without --force.
"""

from __future__ import annotations

import argparse
import sys
import time

from fedad.common.crypto.keys import (
    DEFAULT_KEY_BITS,
    KEY_BITS,
    check_keypair_targets,
    generate_keypair,
    key_fingerprint,
    save_keypair,
)
from fedad.common.errors import FedadError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fedad keygen``."""
    parser.add_argument(
        "--out", required=True, metavar="DIR", help="directory for public.key and private.key (created if missing)"
    )
    parser.add_argument(
        "--bits",
        type=int,
        default=DEFAULT_KEY_BITS,
        help=f"modulus size in bits: one of {', '.join(map(str, KEY_BITS))} (1024: tests only)",
    )
    parser.add_argument("--force", action="store_true", help="replace an existing key pair in DIR")


def run(args: argparse.Namespace) -> int:
    """Generate and write the key pair; prints both paths and the key fingerprint."""
    if args.bits not in KEY_BITS:
        raise FedadError(f"--bits must be one of {', '.join(map(str, KEY_BITS))}, got {args.bits}")
    if args.bits == 1024:
        print("warning: 1024-bit keys are for tests only", file=sys.stderr)
    check_keypair_targets(args.out, args.force)  # fail before spending seconds on primes
    print(f"generating a {args.bits}-bit Paillier key pair ...", file=sys.stderr)
    start = time.perf_counter()
    public_key, private_key = generate_keypair(args.bits)
    pub_path, priv_path = save_keypair(args.out, public_key, private_key, force=args.force)
    print(f"done in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    print(f"public key:  {pub_path}  (for the aggregator)")
    print(
        f"private key: {priv_path}  (mode 0600; the clients under --strategy paillier, only fedad-keyholder "
        "under secure-robust; never the server)"
    )
    print(f"fingerprint: {key_fingerprint(public_key)}")
    return 0
