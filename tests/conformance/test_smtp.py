"""SMTP submission against the emulator with Python's smtplib, as daemons write it: STARTTLS
trusting the emulator's CA, then AUTH XOAUTH2 with an msal client-credentials token for
Exchange Online (or AUTH LOGIN), then sendmail.
"""

import base64
import smtplib
import ssl

import msal
import pytest
import requests

from conftest import DAEMON, EXO_DEFAULT, SECRET, TENANT

MAILER = "eeeeeeee-0000-0000-0000-000000000005"
MAILER_SECRET = "conformance-mailer-secret~5"
FABRIKAM = "22222222-3333-4444-5555-666666666666"
FABRIKAM_MAILER = "eeeeeeee-0000-0000-0000-000000000006"
FABRIKAM_SECRET = "conformance-fabrikam-secret~6"


def token(emulator, client_id, secret, tenant=TENANT):
    app = msal.ConfidentialClientApplication(
        client_id,
        client_credential=secret,
        authority=emulator.authority(tenant),
        instance_discovery=False,
    )
    result = app.acquire_token_for_client(scopes=[EXO_DEFAULT])
    assert "access_token" in result, result
    return result["access_token"]


def connect(emulator):
    if not emulator.smtp:
        pytest.fail("the emulator's state file has no smtp address")
    host, port = emulator.smtp.rsplit(":", 1)
    smtp = smtplib.SMTP(host, int(port), timeout=30)
    smtp.ehlo()
    context = ssl.create_default_context(cafile=emulator.ca_file)
    smtp.starttls(context=context)
    smtp.ehlo()
    return smtp


def xoauth2(user, access_token):
    return base64.b64encode(f"user={user}\x01auth=Bearer {access_token}\x01\x01".encode()).decode()


MESSAGE = """From: Conformance User <user@contoso.com>
To: Outside <outside@contoso.com>
Subject: smtplib conformance {marker}

Sent by smtplib through the emulator.
"""


def test_xoauth2_app_only_sends_and_delivers(emulator):
    access_token = token(emulator, MAILER, MAILER_SECRET)
    smtp = connect(emulator)
    try:
        assert "auth" in smtp.esmtp_features
        assert "XOAUTH2" in smtp.esmtp_features["auth"]
        code, msg = smtp.docmd("AUTH", "XOAUTH2 " + xoauth2("user@contoso.com", access_token))
        assert (code, msg) == (235, b"2.7.0 Authentication successful")
        refused = smtp.sendmail(
            "user@contoso.com",
            ["outside@contoso.com", "user@contoso.com"],
            MESSAGE.format(marker="ok"),
        )
        assert refused == {}
    finally:
        smtp.quit()

    # Delivered: a recipient's Inbox has it (Graph, with the daemon's Mail.Read, whose access
    # scope covers user@contoso.com).
    app = msal.ConfidentialClientApplication(
        DAEMON, client_credential=SECRET, authority=emulator.authority(), instance_discovery=False
    )
    graph = app.acquire_token_for_client(scopes=["https://graph.microsoft.com/.default"])
    assert "access_token" in graph, graph
    r = requests.get(
        f"{emulator.base_url}/v1.0/users/user@contoso.com/mailFolders/inbox/messages?$top=100",
        headers={"Authorization": "Bearer " + graph["access_token"]},
        verify=emulator.ca_file,
        timeout=10,
    )
    assert r.status_code == 200, r.text
    subjects = [m["subject"] for m in r.json()["value"]]
    assert "smtplib conformance ok" in subjects


def test_token_without_smtp_sendasapp_is_refused(emulator):
    access_token = token(emulator, DAEMON, SECRET)  # full_access_as_app only
    smtp = connect(emulator)
    try:
        code, msg = smtp.docmd("AUTH", "XOAUTH2 " + xoauth2("user@contoso.com", access_token))
        assert code == 535
        assert msg.startswith(b"5.7.3 Authentication unsuccessful [")
        with pytest.raises(smtplib.SMTPSenderRefused) as e:
            smtp.sendmail("user@contoso.com", ["outside@contoso.com"], MESSAGE.format(marker="no"))
        assert e.value.smtp_code == 530
        assert b"5.7.57" in e.value.smtp_error
    finally:
        smtp.quit()


def test_tenant_with_smtp_auth_disabled_refuses_oauth(emulator):
    access_token = token(emulator, FABRIKAM_MAILER, FABRIKAM_SECRET, tenant=FABRIKAM)
    smtp = connect(emulator)
    try:
        code, msg = smtp.docmd("AUTH", "XOAUTH2 " + xoauth2("sender@fabrikam.com", access_token))
        assert code == 535
        assert msg.startswith(
            b"5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the "
            b"Tenant. Visit https://aka.ms/smtp_auth_disabled for more information."
        )
    finally:
        smtp.quit()


def test_basic_login_with_basic_disabled_is_refused(emulator):
    smtp = connect(emulator)
    try:
        assert "LOGIN" in smtp.esmtp_features["auth"]
        with pytest.raises(smtplib.SMTPAuthenticationError) as e:
            smtp.login("scanner@litware.com", "conformance-litware-pw")
        assert e.value.smtp_code == 535
        assert b"5.7.139 Authentication unsuccessful, basic authentication is disabled." in e.value.smtp_error
    finally:
        smtp.quit()


def test_basic_login_succeeds_where_basic_is_on(emulator):
    smtp = connect(emulator)
    try:
        code, msg = smtp.login("user@contoso.com", "conformance-user-pw")
        assert code == 235
        assert smtp.sendmail(
            "user@contoso.com", ["outside@contoso.com"], MESSAGE.format(marker="basic")
        ) == {}
    finally:
        smtp.quit()
