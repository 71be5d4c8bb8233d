"""OpenSSL-compatible encryption: round trips, real ``openssl enc`` output, settings."""
import base64
import shutil
import subprocess

import pytest

from bcfg2_cherry.encryption import (
    EVPError, bruteforce_decrypt, get_algorithm, get_lax_decryption, get_passphrases,
    is_encrypted, ssl_decrypt, ssl_encrypt)
from bcfg2_cherry.options import Settings

OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="no openssl binary")

ALGORITHMS = ["aes_256_cbc", "aes_128_cbc", "aes_192_cbc", "aes_256_ecb",
              "aes_128_ctr", "aes_256_cfb", "aes_256_ofb", "camellia_256_cbc",
              "des_ede3_cbc", "bf_cbc"]


def openssl(args, data):
    return subprocess.run([OPENSSL, "enc"] + args, input=data, capture_output=True,
                          check=True, timeout=10).stdout


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_round_trip(algorithm):
    plain = "caf\u00e9 \x00 binary-safe ".encode("utf-8") * 7
    text = ssl_encrypt(plain, "pass phrase", algorithm)
    assert text.startswith("U2FsdGVkX1")  # base64 of "Salted__"
    assert ssl_decrypt(text, "pass phrase", algorithm) == plain


def test_output_is_wrapped_like_openssl_and_salted_randomly():
    text = ssl_encrypt("x" * 100, "p")
    lines = text.split("\n")
    assert text.endswith("\n") and all(len(line) == 64 for line in lines[:-2])
    assert ssl_encrypt("x", "p") != ssl_encrypt("x", "p")


@needs_openssl
@pytest.mark.parametrize("cli, algorithm", [
    ("-aes-256-cbc", None), ("-aes-128-cbc", "AES-128-CBC"), ("-aes-256-ctr",
                                                              "aes_256_ctr")])
def test_decrypts_real_openssl_output(cli, algorithm):
    plain = b"secret from openssl\n" * 10
    text = openssl([cli, "-md", "md5", "-a", "-salt", "-pass", "pass:X"], plain)
    assert b"\n" in text.strip()  # wrapped at 64 columns
    assert ssl_decrypt(text.decode(), "X", algorithm) == plain
    assert ssl_decrypt(text, "X", algorithm) == plain  # bytes in, too


@needs_openssl
def test_openssl_decrypts_our_output():
    text = ssl_encrypt("made by bcfg2_cherry", "Y")
    out = openssl(["-d", "-aes-256-cbc", "-md", "md5", "-a", "-pass", "pass:Y"],
                  text.encode())
    assert out == b"made by bcfg2_cherry"


@needs_openssl
def test_same_salt_gives_the_same_ciphertext_as_openssl():
    plain = b"z" * 50
    ours = base64.b64decode(ssl_encrypt(plain, "K", salt=b"12345678"))
    theirs = openssl(["-aes-256-cbc", "-md", "md5", "-S", "3132333435363738",
                      "-pass", "pass:K"], plain)
    assert ours[:16] == b"Salted__12345678"
    # OpenSSL 3 leaves the header out when the salt is given; older versions keep it
    assert ours[16:] == theirs[-len(ours[16:]):]


def test_raw_binary_input_is_accepted():
    raw = base64.b64decode(ssl_encrypt(b"\xff\xfe", "p"))
    assert ssl_decrypt(raw, "p") == b"\xff\xfe"


@pytest.mark.parametrize("data", ["not base64 !!", "aGVsbG8gd29ybGQ=", "",
                                  base64.b64encode(b"Salted__1234").decode()])
def test_malformed_data_raises_evperror(data):
    with pytest.raises(EVPError):
        ssl_decrypt(data, "p")
    assert not is_encrypted(data)


def test_wrong_passphrase_raises_evperror():
    # a fixed salt: a wrong key passes the padding check about once in 256 keys
    text = ssl_encrypt("hello", "right", salt=b"saltsalt")
    assert is_encrypted(text)
    for wrong in ("wrong", "Right", "right "):
        with pytest.raises(EVPError, match="bad decrypt"):
            ssl_decrypt(text, wrong)


def test_unknown_algorithm_raises_evperror():
    with pytest.raises(EVPError, match="unknown"):
        ssl_encrypt("x", "p", "rot13")
    with pytest.raises(EVPError):
        ssl_decrypt(ssl_encrypt("x", "p"), "p", "aes_999_cbc")


def test_bruteforce_tries_each_passphrase():
    text = ssl_encrypt("found", "third")
    assert bruteforce_decrypt(text, ["first", "second", "third"]) == b"found"
    assert bruteforce_decrypt(text, {"a": "first", "b": "third"}) == b"found"
    with pytest.raises(EVPError):
        bruteforce_decrypt(text, ["first", "second"])
    with pytest.raises(EVPError):
        bruteforce_decrypt(text, [])


def test_settings_from_bcfg2_conf(tmp_path):
    conf = tmp_path / "bcfg2.conf"
    conf.write_text("[encryption]\nalgorithm = AES-128-CBC\nlax_decryption = yes\n"
                    "prod = s3cr%t\nDev = other\n")
    setup = Settings(str(conf))
    assert get_passphrases(setup) == {"prod": "s3cr%t", "dev": "other"}
    assert get_algorithm(setup) == "aes_128_cbc"
    assert get_lax_decryption(setup) is True
    text = ssl_encrypt("conf", "s3cr%t", get_algorithm(setup))
    assert bruteforce_decrypt(text, get_passphrases(setup), get_algorithm(setup)) \
        == b"conf"


def test_settings_defaults(tmp_path):
    setup = Settings(str(tmp_path / "absent.conf"))
    assert get_passphrases(setup) == {} and get_passphrases(None) == {}
    assert get_algorithm(setup) == get_algorithm(None) == "aes_256_cbc"
    assert get_lax_decryption(setup) is False
