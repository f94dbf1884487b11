"""The embedded keyring: the first start writes a private pair into the data directory, later
starts load it (integration gateways start on a copied pair, so the first start is tested here)."""

from __future__ import annotations

import stat
from pathlib import Path

from odock.providers.crypto import encrypt
from odock.providers.keyring import KEY_ID_FILE, PRIVATE_KEY_FILE, load_decrypter
from odock.settings import load_settings


def test_first_embedded_start_writes_a_private_pair_that_later_starts_load(tmp_path: Path) -> None:
    """An empty data directory gets the pair (private file at 0600); a second load reads the same pair."""
    data_dir = tmp_path / "data"
    settings = load_settings(data_dir=data_dir, demo=False)
    first = load_decrypter(settings)
    assert first is not None
    assert stat.S_IMODE((data_dir / PRIVATE_KEY_FILE).stat().st_mode) == 0o600
    key_id = (data_dir / KEY_ID_FILE).read_text().strip()
    assert key_id.startswith("odock-embedded-")
    pem = (data_dir / PRIVATE_KEY_FILE).read_text()

    again = load_decrypter(settings)
    assert again is not None
    assert (data_dir / PRIVATE_KEY_FILE).read_text() == pem
    assert again.decrypt(encrypt("sk-secret", public_pem=first.public_pem, key_id=key_id)) == "sk-secret"


def test_production_mode_without_a_configured_pair_has_no_decrypter(tmp_path: Path) -> None:
    """Only the embedded mode makes a pair of its own; production needs one configured."""
    settings = load_settings(data_dir=tmp_path, demo=False, redis_url="redis://127.0.0.1:6379/0")
    assert load_decrypter(settings) is None
    assert not (tmp_path / PRIVATE_KEY_FILE).exists()
