"""Key files: JSON round trip, 0600 private key, the public-only loader, fingerprints, `fedad keygen`."""

import json
import stat

import pytest

from fedad.common.cli import main as fedad_main
from fedad.common.crypto.keys import (
    generate_keypair,
    is_private_key_file,
    key_fingerprint,
    load_private_key,
    load_public_key,
    save_keypair,
)
from fedad.common.errors import FedadError


@pytest.fixture(scope="module")
def keypair():
    return generate_keypair(1024)


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_save_and_load_round_trip(tmp_path, keypair):
    pub, priv = keypair
    pub_path, priv_path = save_keypair(tmp_path / "keys", pub, priv)
    assert mode(priv_path) == 0o600
    assert json.loads(pub_path.read_text()) == {"kind": "fedad-paillier-public", "n": format(pub.n, "x")}
    assert load_public_key(pub_path) == pub
    loaded = load_private_key(priv_path)
    assert loaded == priv and loaded.public_key == pub
    assert loaded.decrypt(pub.encrypt(1234)) == 1234
    assert is_private_key_file(priv_path) and not is_private_key_file(pub_path)
    assert not list((tmp_path / "keys").glob("*.tmp"))


def test_save_refuses_to_overwrite_without_force(tmp_path, keypair):
    pub, priv = keypair
    save_keypair(tmp_path, pub, priv)
    with pytest.raises(FedadError, match="refusing to overwrite"):
        save_keypair(tmp_path, pub, priv)
    save_keypair(tmp_path, pub, priv, force=True)
    assert mode(tmp_path / "private.key") == 0o600


def test_public_key_loader_refuses_a_private_key(tmp_path, keypair):
    _, priv_path = save_keypair(tmp_path, *keypair)
    with pytest.raises(FedadError, match="refusing a private key: the aggregator must only hold public.key"):
        load_public_key(priv_path)
    # a public-kind file smuggling p and q is refused too
    data = json.loads(priv_path.read_text())
    data["kind"] = "fedad-paillier-public"
    sneaky = tmp_path / "sneaky.key"
    sneaky.write_text(json.dumps(data))
    with pytest.raises(FedadError, match="refusing a private key"):
        load_public_key(sneaky)


def test_private_key_loader_refuses_a_public_key_and_checks_factors(tmp_path, keypair):
    pub_path, priv_path = save_keypair(tmp_path, *keypair)
    with pytest.raises(FedadError, match="is a public key"):
        load_private_key(pub_path)
    data = json.loads(priv_path.read_text())
    data["p"] = format(int(data["p"], 16) + 2, "x")
    bad = tmp_path / "bad.key"
    bad.write_text(json.dumps(data))
    with pytest.raises(FedadError, match="p \\* q does not equal n"):
        load_private_key(bad)


@pytest.mark.parametrize(
    "content, message",
    [
        ("not json at all", "not JSON"),
        ("[1, 2]", "not a fedad Paillier key file"),
        ('{"kind": "ssh-rsa", "n": "ff"}', "not a fedad Paillier key file"),
        ('{"kind": "fedad-paillier-public"}', "'n' must be a hex string"),
        ('{"kind": "fedad-paillier-public", "n": "xyz"}', "'n' must be a hex string"),
        ('{"kind": "fedad-paillier-public", "n": "' + format(3 * 5 * 7 * 11, "x") + '"}', "at least 1024 bits"),
        ('{"kind": "fedad-paillier-public", "n": "' + format(1 << 1500, "x") + '"}', "odd modulus"),
    ],
)
def test_malformed_key_files_raise_fedad_error(tmp_path, content, message):
    path = tmp_path / "public.key"
    path.write_text(content)
    with pytest.raises(FedadError, match=message):
        load_public_key(path)


def test_missing_key_file(tmp_path):
    with pytest.raises(FedadError, match="not found"):
        load_public_key(tmp_path / "nope.key")


def test_fingerprint_is_16_hex_chars_and_tells_keys_apart(keypair):
    pub, _ = keypair
    fp = key_fingerprint(pub)
    assert len(fp) == 16 and int(fp, 16) >= 0
    assert key_fingerprint(pub) == fp
    assert key_fingerprint(generate_keypair(1024)[0]) != fp


def test_generate_rejects_unsupported_sizes():
    with pytest.raises(FedadError):
        generate_keypair(512)


def test_keygen_cli_writes_0600_key_and_refuses_overwrite(tmp_path, capsys):
    out = tmp_path / "keys"
    assert fedad_main(["keygen", "--out", str(out), "--bits", "1024"]) == 0
    assert mode(out / "private.key") == 0o600
    stdout = capsys.readouterr().out
    fingerprint = key_fingerprint(load_public_key(out / "public.key"))
    assert fingerprint in stdout
    first = (out / "private.key").read_text()

    assert fedad_main(["keygen", "--out", str(out), "--bits", "1024"]) == 2
    err = capsys.readouterr().err
    assert "refusing to overwrite" in err and "--force" in err and "Traceback" not in err
    assert (out / "private.key").read_text() == first

    assert fedad_main(["keygen", "--out", str(out), "--bits", "1024", "--force"]) == 0
    assert (out / "private.key").read_text() != first
    assert mode(out / "private.key") == 0o600
    with pytest.raises(FedadError, match="refusing a private key"):
        load_public_key(out / "private.key")


def test_keygen_cli_rejects_other_key_sizes(tmp_path, capsys):
    assert fedad_main(["keygen", "--out", str(tmp_path), "--bits", "4096"]) == 2
    assert "--bits must be one of 1024, 2048, 3072" in capsys.readouterr().err
    assert not (tmp_path / "private.key").exists()
