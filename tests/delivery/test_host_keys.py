"""An unknown host key and a changed one get different advice (issue 24 item 7), against a real OpenSSH sshd.

Unknown: name the known_hosts file the target uses (``target_options.known_hosts``), and compare the
fingerprint with the store's before adding it. Changed: say it may be an attack and never suggest
appending the new key.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from sshd_server import OpenSSHServer

from ddex_etl.delivery import open_target
from ddex_etl.errors import ConfigError, DeliveryTerminalError

# Some other ed25519 key: what a man in the middle would present, as far as known_hosts is concerned.
OTHER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDmmJBjbKJtPdnPXnqE6FjlIUgXL9WFLdOEkZjOLIPYd"


def test_a_changed_host_key_is_called_a_possible_attack(openssh_server: OpenSSHServer, tmp_path: Path) -> None:
    trusted = tmp_path / "store_known_hosts"
    trusted.write_text(f"[127.0.0.1]:{openssh_server.port} {OTHER_KEY}\n")
    with pytest.raises(DeliveryTerminalError) as err:
        open_target(openssh_server.url("x"), **{**openssh_server.options(), "known_hosts": str(trusted)})
    text = str(err.value)
    assert "host key has CHANGED" in text and "man-in-the-middle" in text and "attack" in text
    assert str(trusted) in text and f"ssh-keygen -R '[127.0.0.1]:{openssh_server.port}' -f {trusted}" in text
    assert "SHA256:" in text  # both fingerprints, to compare with what the store says
    assert ">>" not in text and "~/.ssh/known_hosts" not in text  # never "append it", never another file


def test_an_unknown_host_key_names_the_configured_known_hosts(openssh_server: OpenSSHServer, tmp_path: Path) -> None:
    empty = tmp_path / "store_known_hosts"
    empty.write_text("")
    with pytest.raises(DeliveryTerminalError) as err:
        open_target(openssh_server.url("x"), **{**openssh_server.options(), "known_hosts": str(empty)})
    text = str(err.value)
    assert "host key is unknown" in text and f"{empty} has no entry for [127.0.0.1]:{openssh_server.port}" in text
    assert f"ssh-keyscan -p {openssh_server.port} 127.0.0.1" in text and f">> {empty}" in text
    assert "only if the fingerprints match" in text
    assert "~/.ssh/known_hosts" not in text and "CHANGED" not in text


def test_a_missing_known_hosts_or_key_file_is_named(openssh_server: OpenSSHServer, tmp_path: Path) -> None:
    for option in ("known_hosts", "key_file"):
        missing = tmp_path / f"no_{option}"
        with pytest.raises(ConfigError, match=f"target_options.{option} names {missing}, which is not a file"):
            open_target(openssh_server.url("x"), **{**openssh_server.options(), option: str(missing)})
