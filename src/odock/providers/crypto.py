"""Provider-key envelope encryption (spec §3.6).

A provider secret is encrypted with a fresh AES-256-GCM key; that key is wrapped with the
gateway's RSA public key (RSA-OAEP, SHA-256). A browser can therefore encrypt a provider key
with only the public key (WebCrypto does exactly this), and only the gateway can decrypt::

    {"v":1,"alg":"RSA-OAEP-256/A256GCM","keyId":"…","wrappedKey":b64,"iv":b64,"ciphertext":b64}

``ciphertext`` is the AES-GCM output with its 16-byte tag appended (the WebCrypto layout).
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ALGORITHM = "RSA-OAEP-256/A256GCM"
_OAEP = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


class EnvelopeError(Exception):
    """An envelope is malformed, for another key, or fails to decrypt."""


@dataclass(frozen=True)
class KeyPair:
    """An RSA key pair in PEM, with its key id."""

    key_id: str
    private_pem: str
    public_pem: str


def generate_key_pair(key_id: str, bits: int = 3072) -> KeyPair:
    """Generate a new RSA pair for envelope encryption."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return KeyPair(key_id=key_id, private_pem=private_pem, public_pem=public_pem)


def is_envelope(stored: str) -> bool:
    """True when a stored provider key is an envelope (not legacy plaintext)."""
    return stored.lstrip().startswith("{")


def encrypt(secret: str, *, public_pem: str, key_id: str) -> str:
    """Encrypt ``secret`` into an envelope JSON string using the public key."""
    return orjson.dumps(seal(secret, public_pem=public_pem, key_id=key_id)).decode()


def seal(secret: str, *, public_pem: str, key_id: str) -> dict[str, Any]:
    """Encrypt ``secret`` into an envelope, as the mapping (for a JSON column that holds it)."""
    public = serialization.load_pem_public_key(public_pem.encode())
    if not isinstance(public, rsa.RSAPublicKey):
        raise EnvelopeError("the public key is not an RSA key")
    data_key = AESGCM.generate_key(bit_length=256)
    iv = os.urandom(12)
    ciphertext = AESGCM(data_key).encrypt(iv, secret.encode(), None)
    return {
        "v": 1,
        "alg": ALGORITHM,
        "keyId": key_id,
        "wrappedKey": _b64(public.encrypt(data_key, _OAEP)),
        "iv": _b64(iv),
        "ciphertext": _b64(ciphertext),
    }


class EnvelopeDecrypter:
    """Holds the private key (in memory only) and opens envelopes addressed to it."""

    def __init__(self, key_id: str, private_pem: str) -> None:
        try:
            private = serialization.load_pem_private_key(private_pem.encode(), password=None)
        except (ValueError, TypeError) as exc:
            raise EnvelopeError("the provider-key private key is not a valid unencrypted PEM") from exc
        if not isinstance(private, rsa.RSAPrivateKey):
            raise EnvelopeError("the provider-key private key is not an RSA key")
        self.key_id = key_id
        self._private = private

    @property
    def public_pem(self) -> str:
        """The matching public key, for clients that encrypt."""
        return (
            self._private.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )

    def encrypt(self, secret: str) -> str:
        """Encrypt with this pair's public key."""
        return encrypt(secret, public_pem=self.public_pem, key_id=self.key_id)

    def seal(self, secret: str) -> dict[str, Any]:
        """Encrypt with this pair's public key, into the envelope's mapping."""
        return seal(secret, public_pem=self.public_pem, key_id=self.key_id)

    def decrypt(self, envelope_json: str) -> str:
        """Open an envelope; raise :class:`EnvelopeError` on any problem."""
        try:
            envelope = orjson.loads(envelope_json)
        except orjson.JSONDecodeError as exc:
            raise EnvelopeError("envelope is not JSON") from exc
        return self.open(envelope)

    def open(self, envelope: object) -> str:
        """Open an envelope already parsed (a mapping); raise :class:`EnvelopeError` on any problem."""
        if not isinstance(envelope, dict) or envelope.get("v") != 1 or envelope.get("alg") != ALGORITHM:
            raise EnvelopeError("unsupported envelope version or algorithm")
        if envelope.get("keyId") != self.key_id:
            raise EnvelopeError(
                f"envelope was encrypted for key id {envelope.get('keyId')!r}, not {self.key_id!r}"
            )
        try:
            data_key = self._private.decrypt(_unb64(envelope["wrappedKey"]), _OAEP)
            plain = AESGCM(data_key).decrypt(_unb64(envelope["iv"]), _unb64(envelope["ciphertext"]), None)
        except (KeyError, ValueError, InvalidTag) as exc:
            raise EnvelopeError("envelope failed to decrypt") from exc
        return plain.decode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: object) -> bytes:
    if not isinstance(text, str):
        raise ValueError("expected base64 text")
    return base64.b64decode(text, validate=True)
