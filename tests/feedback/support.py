"""Fixtures for feedback tests: the providers' sample payloads (tests/feedback/fixtures,
written from each provider's documentation), and SNS messages signed with a certificate
the test generates and serves itself."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

FIXTURES = Path(__file__).parent / "fixtures"
TOPIC = "arn:aws:sns:us-west-2:123456789012:mailroom-ses-feedback"
CERT_URL = "https://sns.us-west-2.amazonaws.com/SimpleNotificationService-test.pem"


def payload(name: str, **values: str) -> Any:
    text = (FIXTURES / name).read_text()
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    return json.loads(text)


@dataclass
class SnsSigner:
    """Signs SNS messages as SNS does, and serves its certificate at CERT_URL (an httpx
    transport for the app's certificate fetches; every request is recorded)."""

    key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    requests: list[str] = field(default_factory=list)

    def certificate_pem(self) -> bytes:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
        now = datetime.now(UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=1))
            .sign(self.key, hashes.SHA256())
        )
        return certificate.public_bytes(serialization.Encoding.PEM)

    def transport(self) -> httpx.MockTransport:
        pem = self.certificate_pem()

        def handle(request: httpx.Request) -> httpx.Response:
            self.requests.append(str(request.url))
            if str(request.url) == CERT_URL:
                return httpx.Response(200, content=pem)
            if "Action=ConfirmSubscription" in str(request.url):
                return httpx.Response(200, content=b"<ConfirmSubscriptionResponse/>")
            return httpx.Response(404)

        return httpx.MockTransport(handle)

    def message(
        self,
        kind: str = "Notification",
        *,
        message: str = "{}",
        timestamp: datetime | None = None,
        version: str = "1",
        **extra: str,
    ) -> dict[str, Any]:
        stamp = (timestamp or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        body: dict[str, Any] = {
            "Type": kind,
            "MessageId": f"22b80b92-fdea-4c2c-8f9d-{abs(hash(message)) % 10**12:012d}",
            "TopicArn": TOPIC,
            "Message": message,
            "Timestamp": stamp,
            "SignatureVersion": version,
            "SigningCertURL": CERT_URL,
            **extra,
        }
        signed: tuple[str, ...]
        if kind == "Notification":
            signed = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
        else:
            signed = (
                "Message",
                "MessageId",
                "SubscribeURL",
                "Timestamp",
                "Token",
                "TopicArn",
                "Type",
            )
        text = "".join(f"{k}\n{body[k]}\n" for k in signed if k in body)
        algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()  # noqa: S303
        signature = self.key.sign(text.encode(), padding.PKCS1v15(), algorithm)
        body["Signature"] = base64.b64encode(signature).decode()
        return body
