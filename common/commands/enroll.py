"""Enroll this edge node: make its TLS private key and a certificate signing request for the plant's CA.

Writes NAME.key (0600, stays on this node) and NAME.csr (send it to the operator, who runs
`fedad certs sign --csr NAME.csr --ca-dir certs` and sends back NAME.pem). Then:
  fedad-client --root-certificates ca.pem --tls-certificate NAME.pem --tls-key NAME.key ...
Existing files are never overwritten unless --force is given.
"""

from __future__ import annotations

from pathlib import Path

from fedad.common.errors import FedadError
from fedad.common.files import write_private, write_public
from fedad.common.node_names import check_node_name


def add_arguments(parser) -> None:
    parser.add_argument(
        "--name",
        required=True,
        help="this node's name: 1-64 letters, digits, _ . - (the "
        "certificate's subject; the server knows the node by it)",
    )
    parser.add_argument("--out", default=".", help="directory for NAME.key and NAME.csr")
    parser.add_argument("--force", action="store_true", help="replace an existing key and request")


def run(args) -> int:
    from fedad.common.pki import csr_pem, key_pem, make_csr, new_key

    name = check_node_name(args.name, "--name")
    out = Path(args.out)
    key_path, csr_path = out / f"{name}.key", out / f"{name}.csr"
    existing = [str(p) for p in (key_path, csr_path) if p.exists()]
    if existing and not args.force:
        raise FedadError(f"{', '.join(existing)} already exist(s); use --force to replace this node's key")
    key = new_key()
    csr = make_csr(name, key)
    out.mkdir(parents=True, exist_ok=True)
    write_private(key_path, key_pem(key))
    write_public(csr_path, csr_pem(csr))
    print(
        f"wrote {key_path} (private, 0600: keep it on this node) and {csr_path}: send {csr_path.name} to the "
        f"plant operator (fedad certs sign --csr {csr_path.name} --ca-dir CA_DIR)"
    )
    return 0
