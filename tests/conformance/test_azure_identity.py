"""azure-identity against the emulator: authority host + disable_instance_discovery, nothing else."""

import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import CertificateCredential, ClientSecretCredential

from conftest import DAEMON, EXO_DEFAULT, GRAPH_DEFAULT, OLD_SECRET, SECRET, TENANT, claims


def test_client_secret_credential(emulator):
    cred = ClientSecretCredential(
        TENANT, DAEMON, SECRET, authority=emulator.base_url, disable_instance_discovery=True
    )
    token = cred.get_token(EXO_DEFAULT)
    c = claims(emulator, token.token)
    assert c["aud"] == "https://outlook.office365.com"
    assert c["appidacr"] == "1"
    assert c["roles"] == ["full_access_as_app"]
    assert c["tid"] == TENANT
    assert token.expires_on == c["exp"] or abs(token.expires_on - c["exp"]) <= 301


def test_certificate_credential_with_chain(emulator, cert_files, tmp_path):
    pem = tmp_path / "daemon.pem"
    pem.write_text(cert_files["key_pem"] + cert_files["cert_pem"])
    cred = CertificateCredential(
        TENANT,
        DAEMON,
        certificate_path=str(pem),
        send_certificate_chain=True,
        authority=emulator.base_url,
        disable_instance_discovery=True,
    )
    token = cred.get_token(GRAPH_DEFAULT)
    c = claims(emulator, token.token)
    assert c["appidacr"] == "2"  # a certificate; Graph tokens are v1.0 as Entra issues them
    assert c["roles"] == ["Mail.Read"]


def test_certificate_credential_plain(emulator, cert_files, tmp_path):
    pem = tmp_path / "daemon.pem"
    pem.write_text(cert_files["key_pem"] + cert_files["cert_pem"])
    cred = CertificateCredential(
        TENANT, DAEMON, certificate_path=str(pem), authority=emulator.base_url, disable_instance_discovery=True
    )
    c = claims(emulator, cred.get_token(EXO_DEFAULT).token)
    assert c["appidacr"] == "2"


@pytest.mark.parametrize("secret,code", [("not-the-secret", "AADSTS7000215"), (OLD_SECRET, "AADSTS7000222")])
def test_bad_secret_raises_with_aadsts(emulator, secret, code):
    cred = ClientSecretCredential(
        TENANT, DAEMON, secret, authority=emulator.base_url, disable_instance_discovery=True
    )
    with pytest.raises(ClientAuthenticationError) as info:
        cred.get_token(EXO_DEFAULT)
    assert code in str(info.value)
