"""Where the gateway's encryption pair for provider secrets (keys, header values) comes from.

A configured pair (``ODOCK_PROVIDER_KEY_ENCRYPTION_KEY_ID`` + ``…_PRIVATE_KEY``) always wins.
Otherwise the embedded default keeps a pair in its data directory, created on first start
(``provider-key.pem``, mode 0600, and ``provider-key.id``). Production mode without a pair can
still serve legacy plaintext keys (and header values) but cannot store new ones.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from pydantic import SecretStr

from odock.providers.crypto import EnvelopeDecrypter, generate_key_pair

PRIVATE_KEY_FILE = "provider-key.pem"
KEY_ID_FILE = "provider-key.id"


class KeyringSettings(Protocol):
    """The settings the keyring reads (``odock.settings.Settings`` has them)."""

    @property
    def provider_key_encryption_key_id(self) -> str | None:
        """The configured pair's key id."""

    @property
    def provider_key_encryption_private_key(self) -> SecretStr | None:
        """The configured pair's private key (PEM)."""

    @property
    def is_embedded(self) -> bool:
        """Whether the gateway runs in the embedded mode (SQLite, in-process state)."""

    @property
    def data_dir(self) -> Path:
        """Where the embedded mode keeps its files."""


def load_decrypter(settings: KeyringSettings) -> EnvelopeDecrypter | None:
    """The decrypter for this gateway, creating the embedded pair when needed."""
    if settings.provider_key_encryption_key_id and settings.provider_key_encryption_private_key:
        return EnvelopeDecrypter(
            settings.provider_key_encryption_key_id,
            settings.provider_key_encryption_private_key.get_secret_value(),
        )
    if not settings.is_embedded:
        return None
    directory = settings.data_dir
    pem_path = directory / PRIVATE_KEY_FILE
    id_path = directory / KEY_ID_FILE
    if not pem_path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        pair = generate_key_pair(f"odock-embedded-{datetime.now(UTC):%Y%m%d%H%M%S}")
        fd = os.open(pem_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(pair.private_pem)
        id_path.write_text(pair.key_id + "\n")
    return EnvelopeDecrypter(id_path.read_text().strip(), pem_path.read_text())
