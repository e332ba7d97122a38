"""Starts the exgate emulator once per session and hands its coordinates to the tests.

The clients (msal, azure-identity) are used unchanged: the only deviations from production use
are the authority host (the emulator) and turning instance discovery off the documented way.
The emulator's private CA is trusted through REQUESTS_CA_BUNDLE, which both clients honour.
"""

import base64
import json
import os
import pathlib
import subprocess
import tempfile
import time

import pytest
import requests

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent.parent

TENANT = "11111111-2222-3333-4444-555555555555"
TENANT_DOMAIN = "contoso.com"
DAEMON = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
PUBLIC = "cccccccc-0000-0000-0000-000000000001"
SECRET = "conformance-secret~1"
OLD_SECRET = "conformance-old-secret~0"
EXO_DEFAULT = "https://outlook.office365.com/.default"
GRAPH_DEFAULT = "https://graph.microsoft.com/.default"
EWS_DELEGATED = "https://outlook.office365.com/EWS.AccessAsUser.All"
FIXTURES = HERE / "fixtures"


class Emulator:
    def __init__(self, base_url, ca_file, smtp=None, imap=None, pop=None):
        self.base_url = base_url
        self.ca_file = ca_file
        self.smtp = smtp  # "127.0.0.1:PORT" of SMTP submission, or None
        self.imap = imap  # "127.0.0.1:PORT" of IMAP4 (implicit TLS), or None
        self.pop = pop  # "127.0.0.1:PORT" of POP3 (implicit TLS), or None
        self.host = base_url.split("://", 1)[1]

    def authority(self, tenant=TENANT):
        return f"{self.base_url}/{tenant}"

    def stats(self):
        r = requests.get(f"{self.base_url}/_exgate/stats", verify=self.ca_file, timeout=10)
        r.raise_for_status()
        return r.json()

    def jwks(self):
        r = requests.get(f"{self.base_url}/{TENANT}/discovery/v2.0/keys", verify=self.ca_file, timeout=10)
        r.raise_for_status()
        return r.json()


def _start(exe, state, log, listen):
    return subprocess.Popen(
        [
            exe,
            "emulator",
            "--scenario",
            str(HERE / "scenario.toml"),
            "--tls",
            "--listen",
            listen,
            "--state-file",
            str(state),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def _wait(proc, state, log):
    deadline = time.time() + 60
    while not state.exists():
        if proc.poll() is not None:
            log.seek(0)
            return log.read()
        if time.time() > deadline:
            proc.kill()
            pytest.fail("emulator did not write its state file within 60 s")
        time.sleep(0.05)
    return None


@pytest.fixture(scope="session")
def emulator():
    """The emulator, on port 443 when that port can be bound, else on a free port.

    msal sends its ROPC user-realm request to `https://{host}/common/userrealm/...` without the
    authority's port (msal/authority.py `user_realm_discovery`), so ROPC needs the emulator on
    the default HTTPS port; tests that need it skip, saying so, when it is not.
    """
    exe = os.environ.get("EXGATE_BIN") or str(REPO / "target" / "debug" / "exgate")
    with tempfile.TemporaryDirectory(prefix="exgate-conformance-") as tmp:
        state = pathlib.Path(tmp) / "state.json"
        log = open(pathlib.Path(tmp) / "emulator.log", "w+")
        proc = _start(exe, state, log, "127.0.0.1:443")
        failure = _wait(proc, state, log)
        if failure is not None:
            log.seek(0)
            log.truncate(0)
            proc = _start(exe, state, log, "127.0.0.1:0")
            failure = _wait(proc, state, log)
            if failure is not None:
                pytest.fail(f"emulator exited with {proc.returncode}: {failure}")
        try:
            info = json.loads(state.read_text())
            os.environ["REQUESTS_CA_BUNDLE"] = info["ca_file"]
            os.environ["SSL_CERT_FILE"] = info["ca_file"]
            yield Emulator(info["base_url"], info["ca_file"], info.get("smtp"), info.get("imap"), info.get("pop"))
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()


@pytest.fixture
def default_port(emulator):
    if ":" in emulator.host:
        pytest.skip(
            "msal's ROPC user-realm request ignores the authority's port; the emulator could not "
            "bind 127.0.0.1:443 (needs root or CAP_NET_BIND_SERVICE, or the port is busy)"
        )
    return emulator


def claims(emulator, token):
    """Verifies a JWT against the emulator's published JWKS and returns its claims."""
    import jwt
    from jwt.algorithms import RSAAlgorithm

    header = jwt.get_unverified_header(token)
    keys = {k["kid"]: k for k in emulator.jwks()["keys"]}
    assert header["kid"] in keys, "token signed by a key the emulator does not publish"
    key = RSAAlgorithm.from_jwk(json.dumps(keys[header["kid"]]))
    return jwt.decode(token, key=key, algorithms=["RS256"], options={"verify_aud": False})


@pytest.fixture(scope="session")
def cert_files():
    key_pem = (FIXTURES / "daemon.key.pem").read_text()
    cert_pem = (FIXTURES / "daemon.crt.pem").read_text()
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    return {
        "key_pem": key_pem,
        "cert_pem": cert_pem,
        "sha1": cert.fingerprint(hashes.SHA1()).hex().upper(),
        "pfx": str(FIXTURES / "daemon.pfx"),
        "pfx_password": "conformance",
    }


@pytest.fixture(scope="session")
def stranger_cert():
    """A key and certificate generated now and registered nowhere."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stranger")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return {
        "key_pem": key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode(),
        "sha1": cert.fingerprint(hashes.SHA1()).hex().upper(),
    }
