import subprocess
import sys

import pytest

from anonymizer.keys import KeyRing, SecretError, load_or_create_secret


def test_uid_remap_is_deterministic_and_valid():
    keys = KeyRing(b"k" * 32)
    uid = keys.uid("1.2.3.4")
    assert uid == keys.uid("1.2.3.4")
    assert uid != KeyRing(b"j" * 32).uid("1.2.3.4")
    assert uid.startswith("2.25.") and len(uid) <= 64


def test_identity_seed_is_the_same_in_another_process():
    code = "from anonymizer.keys import KeyRing; print(KeyRing(b'k'*32).identity_seed('PABC'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert int(out) == KeyRing(b"k" * 32).identity_seed("PABC")


def test_date_offset_in_range():
    keys = KeyRing(b"k" * 32)
    offsets = {keys.date_offset_days(f"P{i}", -100, -10) for i in range(200)}
    assert min(offsets) >= -100 and max(offsets) <= -10 and len(offsets) > 20


def test_secret_created_0600_and_open_file_refused(tmp_path):
    path = tmp_path / "secret"
    secret = load_or_create_secret(path)
    assert (path.stat().st_mode & 0o777) == 0o600 and len(secret) == 32
    path.chmod(0o644)
    with pytest.raises(SecretError, match="chmod 600"):
        load_or_create_secret(path)
