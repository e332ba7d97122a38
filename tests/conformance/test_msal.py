"""msal (Python) against the emulator, unchanged except for the authority and instance discovery."""

import msal
import pytest

from conftest import (
    DAEMON,
    EWS_DELEGATED,
    EXO_DEFAULT,
    GRAPH_DEFAULT,
    OLD_SECRET,
    PUBLIC,
    SECRET,
    TENANT,
    TENANT_DOMAIN,
    claims,
)


def cca(emulator, credential, tenant=TENANT):
    return msal.ConfidentialClientApplication(
        DAEMON,
        client_credential=credential,
        authority=emulator.authority(tenant),
        instance_discovery=False,
    )


def pca(emulator):
    return msal.PublicClientApplication(PUBLIC, authority=emulator.authority(), instance_discovery=False)


def assert_app_token(emulator, result, appidacr):
    assert "access_token" in result, result
    assert result["token_type"] == "Bearer"
    assert 3500 <= result["expires_in"] <= 3599
    c = claims(emulator, result["access_token"])
    assert c["aud"] == "https://outlook.office365.com"
    assert c["iss"] == f"https://sts.windows.net/{TENANT}/"
    assert c["tid"] == TENANT
    assert c["appid"] == DAEMON
    assert c["appidacr"] == appidacr
    assert c["roles"] == ["full_access_as_app"]
    assert c["idtyp"] == "app"
    assert "scp" not in c and "upn" not in c
    return c


def test_client_secret(emulator):
    result = cca(emulator, SECRET).acquire_token_for_client([EXO_DEFAULT])
    assert_app_token(emulator, result, "1")


def test_client_secret_with_domain_authority(emulator):
    # The tenant is given as a verified domain; the metadata resolves it to the GUID.
    result = cca(emulator, SECRET, tenant=TENANT_DOMAIN).acquire_token_for_client([GRAPH_DEFAULT])
    assert "access_token" in result, result
    c = claims(emulator, result["access_token"])
    assert c["tid"] == TENANT
    assert c["ver"] == "1.0"  # Microsoft Graph tokens are v1.0, as Entra issues them
    assert c["aud"] == "https://graph.microsoft.com"
    assert c["roles"] == ["Mail.Read"]


def seen(emulator, before):
    after = emulator.stats()
    return {k: after[k] - before[k] for k in after if k.startswith("assertions_")}


def test_certificate_pem_key_and_sha1_thumbprint(emulator, cert_files):
    credential = {"private_key": cert_files["key_pem"], "thumbprint": cert_files["sha1"]}
    before = emulator.stats()
    result = cca(emulator, credential).acquire_token_for_client([EXO_DEFAULT])
    assert_app_token(emulator, result, "2")
    # RS256 with a SHA-1 x5t, no x5c.
    assert seen(emulator, before) == {
        "assertions_rs": 1,
        "assertions_ps": 0,
        "assertions_x5t_s256": 0,
        "assertions_x5c": 0,
    }


def test_certificate_with_public_certificate_x5c(emulator, cert_files):
    credential = {
        "private_key": cert_files["key_pem"],
        "thumbprint": cert_files["sha1"],
        "public_certificate": cert_files["cert_pem"],
    }
    app = cca(emulator, credential)
    before = emulator.stats()
    assert_app_token(emulator, app.acquire_token_for_client([EXO_DEFAULT]), "2")
    assert seen(emulator, before)["assertions_x5c"] == 1
    # A second resource within the assertion's lifetime: msal reuses the same assertion (jti).
    second = app.acquire_token_for_client([GRAPH_DEFAULT])
    assert "access_token" in second, second


def test_certificate_from_pfx_uses_sha256_path(emulator, cert_files):
    credential = {
        "private_key_pfx_path": cert_files["pfx"],
        "passphrase": cert_files["pfx_password"],
        "public_certificate": True,
    }
    before = emulator.stats()
    result = cca(emulator, credential).acquire_token_for_client([EXO_DEFAULT])
    assert_app_token(emulator, result, "2")
    # The PFX path signs PS256 and names the key by its SHA-256 thumbprint.
    assert seen(emulator, before) == {
        "assertions_rs": 0,
        "assertions_ps": 1,
        "assertions_x5t_s256": 1,
        "assertions_x5c": 1,
    }


def test_device_flow(emulator):
    app = pca(emulator)
    flow = app.initiate_device_flow(scopes=[EWS_DELEGATED])
    assert "user_code" in flow, flow
    assert flow["user_code"] in flow["message"]
    result = app.acquire_token_by_device_flow(flow)
    assert "access_token" in result, result
    c = claims(emulator, result["access_token"])
    assert c["scp"] == "EWS.AccessAsUser.All"
    assert c["upn"] == "user@contoso.com"
    assert c["tid"] == TENANT
    assert c["appidacr"] == "0"
    assert "refresh_token" in result
    assert result["id_token_claims"]["preferred_username"] == "user@contoso.com"
    # The account is cached and a silent refresh works through the refresh token.
    account = app.get_accounts()[0]
    silent = app.acquire_token_silent([EWS_DELEGATED], account=account, force_refresh=True)
    assert silent and "access_token" in silent, silent


def test_username_password(default_port):
    emulator = default_port
    result = pca(emulator).acquire_token_by_username_password(
        "user@contoso.com", "conformance-user-pw", scopes=[EWS_DELEGATED]
    )
    assert "access_token" in result, result
    c = claims(emulator, result["access_token"])
    assert c["upn"] == "user@contoso.com"
    assert c["amr"] == ["pwd"]


@pytest.mark.parametrize(
    "credential_kind,code",
    [("wrong_secret", 7000215), ("expired_secret", 7000222), ("unregistered_cert", 700027)],
)
def test_bad_credentials_give_the_right_aadsts(emulator, stranger_cert, credential_kind, code):
    credential = {
        "wrong_secret": "not-the-secret",
        "expired_secret": OLD_SECRET,
        "unregistered_cert": {"private_key": stranger_cert["key_pem"], "thumbprint": stranger_cert["sha1"]},
    }[credential_kind]
    result = cca(emulator, credential).acquire_token_for_client([EXO_DEFAULT])
    assert result.get("error") == "invalid_client", result
    assert result["error_codes"] == [code]
    assert result["error_description"].startswith(f"AADSTS{code}: ")


def test_common_authority_for_client_credentials_gives_50059(emulator):
    with pytest.warns(DeprecationWarning):
        result = cca(emulator, SECRET, tenant="common").acquire_token_for_client([EXO_DEFAULT])
    assert result.get("error") == "invalid_request", result
    assert result["error_codes"] == [50059]


def test_mfa_user_on_ropc_gives_50076(default_port):
    emulator = default_port
    result = pca(emulator).acquire_token_by_username_password(
        "mfa@contoso.com", "conformance-mfa-pw", scopes=[EWS_DELEGATED]
    )
    assert result.get("error") == "invalid_grant", result
    assert result["error_codes"] == [50076]
    assert result["error_description"].startswith("AADSTS50076: ")
