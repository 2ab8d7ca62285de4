"""Paillier key pairs: generate, save as small JSON files, load with the public/private roles kept apart.

public.key  ``{"kind": "fedad-paillier-public", "n": "<hex>"}``            (for the aggregator)
private.key ``{"kind": "fedad-paillier-private", "n": ..., "p": ..., "q": ...}``  (clients only, 0600)

The aggregator loads keys through ``load_public_key``, which refuses a private key, so the server can
never be started holding the means to decrypt a single client's update.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import TypeAlias

from phe import paillier

from fedad.common.errors import FedadError

PUBLIC_KIND = "fedad-paillier-public"
PRIVATE_KIND = "fedad-paillier-private"
KEY_BITS = (1024, 2048, 3072)  # 1024 only for tests: below today's recommended strength
DEFAULT_KEY_BITS = 2048
MIN_KEY_BITS = 1024
PUBLIC_KEY_FILE = "public.key"
PRIVATE_KEY_FILE = "private.key"

PublicKey: TypeAlias = paillier.PaillierPublicKey
PrivateKey: TypeAlias = paillier.PaillierPrivateKey


def generate_keypair(bits: int = DEFAULT_KEY_BITS) -> tuple[PublicKey, PrivateKey]:
    """A fresh Paillier key pair with an n of exactly ``bits`` bits (1024, 2048 or 3072)."""
    if bits not in KEY_BITS:
        raise FedadError(f"key size must be one of {', '.join(map(str, KEY_BITS))} bits, got {bits}")
    return paillier.generate_paillier_keypair(n_length=bits)


def key_bytes(public_key: PublicKey) -> int:
    """Bytes of n; a ciphertext (mod n^2) is serialised in twice that many."""
    return (public_key.n.bit_length() + 7) // 8


def key_fingerprint(public_key: PublicKey) -> str:
    """First 16 hex characters of sha256(n as big-endian bytes): names the key in every message."""
    n = public_key.n
    return hashlib.sha256(n.to_bytes(key_bytes(public_key), "big")).hexdigest()[:16]


def public_key_to_json(public_key: PublicKey) -> str:
    """The public.key file content."""
    return json.dumps({"kind": PUBLIC_KIND, "n": format(public_key.n, "x")}) + "\n"


def private_key_to_json(private_key: PrivateKey) -> str:
    """The private.key file content (n, p, q)."""
    return (
        json.dumps(
            {
                "kind": PRIVATE_KIND,
                "n": format(private_key.public_key.n, "x"),
                "p": format(private_key.p, "x"),
                "q": format(private_key.q, "x"),
            }
        )
        + "\n"
    )


def _atomic_write(path: Path, text: str, mode: int) -> None:
    """Write via a temp file created with ``mode`` from the start, then rename over ``path``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)  # mkstemp: 0600
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def check_keypair_targets(out_dir: str | os.PathLike, force: bool = False) -> tuple[Path, Path]:
    """Paths of public.key and private.key in out_dir; FedadError if they exist and not ``force``."""
    out = Path(out_dir)
    pub_path, priv_path = out / PUBLIC_KEY_FILE, out / PRIVATE_KEY_FILE
    if out.exists() and not out.is_dir():
        raise FedadError(f"{out} exists and is not a directory")
    existing = [str(p) for p in (pub_path, priv_path) if p.exists()]
    if existing and not force:
        raise FedadError(f"refusing to overwrite {', '.join(existing)} (use --force to replace the key pair)")
    return pub_path, priv_path


def save_keypair(
    out_dir: str | os.PathLike, public_key: PublicKey, private_key: PrivateKey, force: bool = False
) -> tuple[Path, Path]:
    """Write public.key (0644) and private.key (0600) into out_dir; refuses to overwrite without force."""
    pub_path, priv_path = check_keypair_targets(out_dir, force)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    _atomic_write(priv_path, private_key_to_json(private_key), 0o600)
    _atomic_write(pub_path, public_key_to_json(public_key), 0o644)
    return pub_path, priv_path


def _read_key_json(path: str | os.PathLike) -> dict:
    p = Path(path)
    if not p.is_file():
        raise FedadError(f"key file not found: {p}")
    try:
        data = json.loads(p.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise FedadError(f"{p} is not a fedad Paillier key file (not JSON)") from None
    if not isinstance(data, dict) or data.get("kind") not in (PUBLIC_KIND, PRIVATE_KIND):
        raise FedadError(f"{p} is not a fedad Paillier key file (kind must be {PUBLIC_KIND} or {PRIVATE_KIND})")
    return data


def _hex_int(data: dict, field: str, path: str | os.PathLike) -> int:
    value = data.get(field)
    try:
        if not isinstance(value, str):
            raise TypeError(field)
        number = int(value, 16)
    except (TypeError, ValueError):
        raise FedadError(f"{path}: field '{field}' must be a hex string") from None
    if number <= 1:
        raise FedadError(f"{path}: field '{field}' must be greater than 1")
    return number


def _public_from(data: dict, path: str | os.PathLike) -> PublicKey:
    n = _hex_int(data, "n", path)
    if n.bit_length() < MIN_KEY_BITS or n % 2 == 0:
        raise FedadError(f"{path}: n must be an odd modulus of at least {MIN_KEY_BITS} bits")
    return paillier.PaillierPublicKey(n)


def is_private_key_file(path: str | os.PathLike) -> bool:
    """True when ``path`` is a fedad private key (tells the two key files apart)."""
    return _read_key_json(path)["kind"] == PRIVATE_KIND


def load_public_key(path: str | os.PathLike) -> PublicKey:
    """The aggregator's loader: a public key, refusing a private key or a malformed file (FedadError)."""
    data = _read_key_json(path)
    if data["kind"] == PRIVATE_KIND or "p" in data or "q" in data:
        raise FedadError(f"{path}: refusing a private key: the aggregator must only hold public.key")
    return _public_from(data, path)


def load_private_key(path: str | os.PathLike) -> PrivateKey:
    """A client's private key (its ``.public_key`` is the matching public key); checks p * q == n."""
    data = _read_key_json(path)
    if data["kind"] != PRIVATE_KIND:
        raise FedadError(f"{path} is a public key; decrypting needs private.key")
    public_key = _public_from(data, path)
    p, q = _hex_int(data, "p", path), _hex_int(data, "q", path)
    if p * q != public_key.n:
        raise FedadError(f"{path}: p * q does not equal n; the private key file is corrupted")
    return paillier.PaillierPrivateKey(public_key, p, q)
