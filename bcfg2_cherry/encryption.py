"""OpenSSL ``enc``-compatible encryption of repository secrets (spec repository.md §5.7).

Bcfg2 repositories hold secrets encrypted the way ``openssl enc -<cipher> -md md5 -a
-salt`` writes them: base64 of ``Salted__`` + an 8-byte salt + the ciphertext, with key
and IV derived from passphrase and salt by one round of OpenSSL's MD5-based
``EVP_BytesToKey``. Passphrases are the ``name = secret`` lines of ``[encryption]``;
the cipher is ``[encryption] algorithm`` (default ``aes_256_cbc``). This module does the
same with the ``cryptography`` package, so files encrypted by upstream's ``bcfg2-crypt``
or by hand with ``openssl enc`` decrypt unchanged.
"""
import base64
import binascii
import hashlib
import importlib
import logging
import os

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

logger = logging.getLogger(__name__)

#: The cipher used when ``[encryption] algorithm`` is not set.
DEFAULT_ALGORITHM = "aes_256_cbc"
#: Options of ``[encryption]`` that are settings, not passphrases.
SETTING_NAMES = frozenset(("algorithm", "lax_decryption"))
#: What every salted OpenSSL ``enc`` output starts with.
MAGIC = b"Salted__"
SALT_LEN = 8


class EVPError(Exception):
    """Data could not be decrypted (wrong passphrase, damaged data, unknown cipher)."""


def _decrepit(name, kind="algorithms"):
    """A cipher or mode from ``cryptography``'s ``decrepit`` module (or its old place)."""
    try:
        module = importlib.import_module("cryptography.hazmat.decrepit.ciphers." + kind)
        return getattr(module, name)
    except (ImportError, AttributeError):
        return getattr(algorithms if kind == "algorithms" else modes, name, None)


#: short OpenSSL names -> canonical ``<cipher>_<bits>_<mode>`` names
_ALIASES = {
    "aes128": "aes_128_cbc", "aes192": "aes_192_cbc", "aes256": "aes_256_cbc",
    "camellia128": "camellia_128_cbc", "camellia192": "camellia_192_cbc",
    "camellia256": "camellia_256_cbc", "des3": "des_ede3_cbc", "bf": "bf_cbc",
    "blowfish": "bf_cbc", "cast": "cast5_cbc", "cast_cbc": "cast5_cbc",
}

#: mode name -> (mode factory taking the IV, uses an IV, is padded)
_MODES = {
    "cbc": (modes.CBC, True, True),
    "ecb": (lambda iv: modes.ECB(), False, True),
    "cfb": (_decrepit("CFB", "modes"), True, False),
    "cfb128": (_decrepit("CFB", "modes"), True, False),
    "cfb8": (_decrepit("CFB8", "modes"), True, False),
    "ofb": (_decrepit("OFB", "modes"), True, False),
    "ctr": (modes.CTR, True, False),
}


def normalize_algorithm(algorithm):
    """Canonical cipher name: ``AES-256-CBC`` -> ``aes_256_cbc``."""
    name = (algorithm or DEFAULT_ALGORITHM).strip().lower().replace("-", "_")
    return _ALIASES.get(name, name)


def _cipher_spec(algorithm):
    """(cipher class, key length, IV length, mode factory, padded, block size)."""
    name = normalize_algorithm(algorithm)
    parts = name.split("_")
    try:
        if parts[0] in ("aes", "camellia") and len(parts) == 3:
            cls = algorithms.AES if parts[0] == "aes" else _decrepit("Camellia")
            bits, mode = int(parts[1]), parts[2]
            if bits not in (128, 192, 256):
                raise ValueError(name)
            key_len, block = bits // 8, 16
        elif name == "des_ede3_cbc" or name.startswith("des_ede3_"):
            cls, key_len, block, mode = _decrepit("TripleDES"), 24, 8, parts[-1]
        elif parts[0] == "bf" and len(parts) == 2:
            cls, key_len, block, mode = _decrepit("Blowfish"), 16, 8, parts[1]
        elif parts[0] == "cast5" and len(parts) == 2:
            cls, key_len, block, mode = _decrepit("CAST5"), 16, 8, parts[1]
        else:
            raise ValueError(name)
        make_mode, uses_iv, padded = _MODES[mode]
    except (ValueError, KeyError, IndexError):
        raise EVPError("unknown cipher algorithm %r" % algorithm) from None
    if cls is None:
        raise EVPError("cipher algorithm %r is not available" % algorithm)
    if mode == "ctr" and block != 16:
        raise EVPError("unknown cipher algorithm %r" % algorithm)
    return cls, key_len, (block if uses_iv else 0), make_mode, padded, block


def evp_bytes_to_key(passphrase, salt, key_len, iv_len):
    """OpenSSL's ``EVP_BytesToKey`` with MD5 and one round: returns (key, iv)."""
    derived = b""
    block = b""
    while len(derived) < key_len + iv_len:
        block = hashlib.md5(block + passphrase + salt, usedforsecurity=False).digest()
        derived += block
    return derived[:key_len], derived[key_len:key_len + iv_len]


def _as_bytes(value):
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def _unwrap(data):
    """The raw ``Salted__`` blob from base64 text (any line wrapping) or raw bytes."""
    raw = _as_bytes(data)
    if not raw.startswith(MAGIC):
        try:
            raw = base64.b64decode(b"".join(raw.split()), validate=True)
        except (binascii.Error, ValueError):
            raise EVPError("data is neither base64 nor salted OpenSSL output") from None
    if not raw.startswith(MAGIC) or len(raw) < len(MAGIC) + SALT_LEN:
        raise EVPError("data does not start with the OpenSSL 'Salted__' header")
    return raw[len(MAGIC):len(MAGIC) + SALT_LEN], raw[len(MAGIC) + SALT_LEN:]


def ssl_decrypt(data, passphrase, algorithm=None):
    """Decrypt ``openssl enc`` output (base64 text or raw bytes); returns bytes.

    Raises EVPError when the data is malformed or the padding is wrong (almost always
    a wrong passphrase; stream modes cannot tell and return garbage, as OpenSSL does).
    """
    salt, body = _unwrap(data)
    cls, key_len, iv_len, make_mode, padded, block = _cipher_spec(algorithm)
    key, iv = evp_bytes_to_key(_as_bytes(passphrase), salt, key_len, iv_len)
    if padded and (not body or len(body) % block):
        raise EVPError("ciphertext length %d is not a multiple of the block size"
                       % len(body))
    try:
        decryptor = Cipher(cls(key), make_mode(iv)).decryptor()
        plain = decryptor.update(body) + decryptor.finalize()
        if padded:
            unpadder = padding.PKCS7(block * 8).unpadder()
            plain = unpadder.update(plain) + unpadder.finalize()
    except ValueError as err:
        raise EVPError("bad decrypt: %s" % err) from None
    return plain


def ssl_encrypt(plaintext, passphrase, algorithm=None, salt=None):
    """Encrypt like ``openssl enc -<cipher> -md md5 -salt -a``; returns base64 text.

    The text is wrapped at 64 columns and ends with a newline, byte for byte what
    OpenSSL writes for the same salt. ``salt`` (8 bytes) is random when not given.
    """
    if salt is None:
        salt = os.urandom(SALT_LEN)
    salt = _as_bytes(salt)
    if len(salt) != SALT_LEN:
        raise EVPError("the salt must be %d bytes" % SALT_LEN)
    cls, key_len, iv_len, make_mode, padded, block = _cipher_spec(algorithm)
    key, iv = evp_bytes_to_key(_as_bytes(passphrase), salt, key_len, iv_len)
    data = _as_bytes(plaintext)
    if padded:
        padder = padding.PKCS7(block * 8).padder()
        data = padder.update(data) + padder.finalize()
    encryptor = Cipher(cls(key), make_mode(iv)).encryptor()
    body = encryptor.update(data) + encryptor.finalize()
    text = base64.b64encode(MAGIC + salt + body).decode("ascii")
    return "".join(text[i:i + 64] + "\n" for i in range(0, len(text), 64))


def bruteforce_decrypt(data, passphrases, algorithm=None):
    """Try every passphrase (a list of secrets, or a name -> secret dict) in turn.

    Returns the first successful decryption as bytes; raises EVPError if none works.
    """
    if isinstance(passphrases, dict):
        passphrases = list(passphrases.values())
    _unwrap(data)  # a malformed blob fails once, not once per passphrase
    for passphrase in passphrases or ():
        try:
            return ssl_decrypt(data, passphrase, algorithm=algorithm)
        except EVPError:
            continue
    raise EVPError("no passphrase decrypts the data")


def get_passphrases(setup):
    """The passphrases of ``[encryption]`` as name -> secret (settings left out)."""
    if setup is None:
        return {}
    return {name: secret for name, secret in setup.items("encryption").items()
            if name.lower() not in SETTING_NAMES}


def get_algorithm(setup):
    """``[encryption] algorithm``, normalized (default ``aes_256_cbc``)."""
    if setup is None:
        return DEFAULT_ALGORITHM
    return normalize_algorithm(setup.get("encryption", "algorithm", DEFAULT_ALGORITHM))


def get_lax_decryption(setup):
    """``[encryption] lax_decryption`` (default false)."""
    if setup is None:
        return False
    return setup.getbool("encryption", "lax_decryption", False)


def is_encrypted(data):
    """Best guess whether ``data`` is OpenSSL ``enc`` output (no false negatives)."""
    try:
        _unwrap(data)
    except EVPError:
        return False
    return True
