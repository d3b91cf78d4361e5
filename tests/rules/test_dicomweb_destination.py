"""The ``dicomweb`` destination kind: parsed beside folder and DICOM kinds, secrets only by file."""

from __future__ import annotations

from pathlib import Path

import pytest

from dicom_rules import DicomWebDestination, RulesError, load_rules
from dicom_rules.decision import BasicAuth, BearerAuth, OAuth2ClientCredentials, describe_destination

HEAD = "routes:\n  - name: all\n    to: archive\ndestinations:\n  archive:\n    dicomweb:\n"


def _load(tmp_path: Path, body: str) -> DicomWebDestination:
    path = tmp_path / "rules.yaml"
    path.write_text(HEAD + body)
    dest = load_rules(path).destinations["archive"]
    assert isinstance(dest, DicomWebDestination)
    return dest


def test_dicomweb_destination_resolves_files_against_the_rule_folder(tmp_path: Path) -> None:
    dest = _load(
        tmp_path,
        "      url: https://archive.example.org/dicom-web/\n"
        "      tls: {ca_bundle: ca.pem, certificate: gw.pem, private_key: gw.key}\n"
        "      auth: {basic: {username: gateway, password_file: secrets/pw}}\n"
        "      timeout_s: 30\n",
    )
    assert dest.url == "https://archive.example.org/dicom-web"
    assert dest.tls is not None and dest.tls.ca_bundle == tmp_path / "ca.pem"
    assert dest.auth == BasicAuth("gateway", tmp_path / "secrets/pw")
    assert dest.timeout_s == 30
    assert "dicomweb STOW-RS https://archive.example.org/dicom-web" in describe_destination(dest)


@pytest.mark.parametrize(
    ("auth", "expected"),
    [
        ("{bearer_token_file: token}", BearerAuth),
        (
            "{oauth2: {token_url: 'https://login/t', client_id: gw, client_secret_file: s}}",
            OAuth2ClientCredentials,
        ),
    ],
)
def test_dicomweb_auth_kinds(tmp_path: Path, auth: str, expected: type) -> None:
    dest = _load(tmp_path, f"      url: http://127.0.0.1:8042/dicom-web\n      auth: {auth}\n")
    assert isinstance(dest.auth, expected)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("      url: https://user:secret@archive/dicom-web\n", "URL carries credentials"),
        ("      url: https://a/dw\n      auth: {basic: {username: u, password: p}}\n", "password"),
        (
            "      url: https://a/dw\n"
            "      auth: {bearer_token_file: t, basic: {username: u, password_file: p}}\n",
            "auth takes one of",
        ),
        ("      url: ftp://a/dw\n", "url"),
        ("      url: https://a/dw\n      tls: {certificate: c.pem}\n", "together"),
    ],
)
def test_dicomweb_refuses_secrets_in_the_rule_file_and_bad_shapes(
    tmp_path: Path, body: str, message: str
) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(HEAD + body)
    with pytest.raises(RulesError) as info:
        load_rules(path)
    assert message in str(info.value)
