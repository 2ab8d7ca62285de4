"""Sign an edge node's certificate request with the plant CA (the operator's side of enrollment).

The issued certificate's subject is the node's name (from its request, checked against --name if given),
usable only for TLS client authentication, valid for --days. The server then knows the node by that name.

example:
  fedad certs sign --csr node_07.csr --ca-dir certs --name node_07 --days 365      # writes node_07.pem
"""

from __future__ import annotations

from pathlib import Path

from fedad.common.errors import FedadError
from fedad.common.files import write_public


def add_arguments(parser) -> None:
    parser.add_argument("--csr", required=True, help="the node's signing request (fedad enroll made NAME.csr)")
    parser.add_argument("--ca-dir", required=True, help="directory with the plant CA's ca.pem and ca.key")
    parser.add_argument("--name", default=None, help="the node name you expect; refused if the request says another")
    parser.add_argument("--days", type=int, default=365, help="lifetime of the certificate in days")
    parser.add_argument("--out", default=None, help="certificate file to write (default: NAME.pem beside --csr)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing certificate file")


def run(args) -> int:
    from fedad.common.pki import cert_pem, certificate_info, load_certificate, load_csr, load_private_key, sign_csr

    if args.days < 1:
        raise FedadError("--days must be at least 1")
    ca_dir = Path(args.ca_dir)
    for f in ("ca.pem", "ca.key"):
        if not (ca_dir / f).is_file():
            raise FedadError(f"{ca_dir / f} not found (the plant CA: fedad certs --out {ca_dir} makes one)")
    if not Path(args.csr).is_file():
        raise FedadError(f"signing request not found: {args.csr}")
    csr = load_csr(Path(args.csr).read_bytes())
    ca = load_certificate((ca_dir / "ca.pem").read_bytes(), str(ca_dir / "ca.pem"))
    ca_key = load_private_key((ca_dir / "ca.key").read_bytes(), str(ca_dir / "ca.key"))
    cert = sign_csr(csr, ca, ca_key, args.days, name=args.name)
    info = certificate_info(cert)
    out = Path(args.out) if args.out else Path(args.csr).with_name(f"{info.name}.pem")
    if out.exists() and not args.force:
        raise FedadError(f"{out} already exists; use --force to replace it")
    write_public(out, cert_pem(cert))
    print(
        f"wrote {out}: client certificate for {info.name}, serial 0x{info.serial:x}, valid {args.days} days "
        f"until {info.not_after:%Y-%m-%d %H:%M} UTC (revoke with a line '{info.name}' or '0x{info.serial:x}' in "
        f"the server's --revoked file)"
    )
    return 0
