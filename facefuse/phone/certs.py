"""Certificates a phone can trust: a small local certificate authority, made once, that signs
the server's certificate for this machine's loopback and LAN addresses.

Why a CA and not a plain self-signed certificate: browsers show a page behind a warning for a
self-signed certificate, but refuse to register its service worker, so the app would never
work offline. A phone that installs our CA trusts every server certificate it signs. The CA is
name-constrained to loopback and private LAN addresses, so even a leaked CA key cannot vouch
for any site on the internet.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import ipaddress
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..errors import BackendError

CA_DAYS = 3650
SERVER_DAYS = 397  # below the 398/825-day ceilings Apple and Chrome put on server certificates
LOCAL_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
    "100.64.0.0/10",  # carrier-grade NAT space, which Tailscale-like VPNs use too
    "::1/128"))
LOCAL_NAMES = ("localhost",)


def config_dir() -> Path:
    """Where the CA lives: $FACEFUSE_CONFIG_DIR, else the platform's user config folder."""
    if os.environ.get("FACEFUSE_CONFIG_DIR"):
        return Path(os.environ["FACEFUSE_CONFIG_DIR"])
    if sys.platform == "win32":
        return Path(os.environ.get("APPDATA", Path.home())) / "facefuse"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "facefuse"
    return Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config")) / "facefuse"


@dataclass(frozen=True)
class Authority:
    """The local CA on disk: its certificate (given to phones) and its private key (never)."""

    cert_path: Path
    key_path: Path

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_path.read_bytes())

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the certificate, as phones show it (AA:BB:...), to compare by eye."""
        return self.certificate.fingerprint(hashes.SHA256()).hex(":").upper()

    @property
    def spki_sha256(self) -> str:
        """Base64 SHA-256 of the public key (what Chromium's --ignore-certificate-errors-spki-list
        takes; tests use it to make a browser trust this CA as a phone that installed it)."""
        spki = self.certificate.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        digest = hashes.Hash(hashes.SHA256())
        digest.update(spki)
        return base64.b64encode(digest.finalize()).decode()


def _write_private(path: Path, data: bytes) -> None:
    """Write a file only its owner can read, atomically (temp file + rename)."""
    tmp = path.with_name(f".{path.name}.part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def ensure_authority(folder: Path | None = None) -> Authority:
    """The CA in `folder` (default: config_dir()/phone), made on first use and kept after."""
    folder = Path(folder) if folder else config_dir() / "phone"
    authority = Authority(folder / "facefuse-ca.crt", folder / "facefuse-ca.key")
    if authority.cert_path.exists() and authority.key_path.exists():
        return authority
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise BackendError(f"cannot create the certificate folder {folder}: {exc}") from None
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "facefuse"),
        x509.NameAttribute(NameOID.COMMON_NAME, f"facefuse local CA ({socket.gethostname()})")])
    now = dt.datetime.now(dt.timezone.utc)
    constraints = x509.NameConstraints(
        permitted_subtrees=[x509.DNSName(n) for n in LOCAL_NAMES]
        + [x509.IPAddress(n) for n in LOCAL_NETWORKS], excluded_subtrees=None)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=True, crl_sign=True,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(constraints, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256()))
    _write_private(authority.key_path, _key_pem(key))
    _write_private(authority.cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return authority


def lan_addresses() -> list[str]:
    """This machine's private LAN IPv4 addresses (what a phone on the same Wi-Fi can reach,
    and what our name-constrained CA may sign for).

    The UDP `connect` only asks the kernel for its route; it sends no packet."""
    found: list[str] = []
    candidates: list[str] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.254.254.254", 1))
            candidates.append(probe.getsockname()[0])
        except OSError:
            pass
    with contextlib.suppress(OSError):
        candidates += [info[4][0] for info in socket.getaddrinfo(
            socket.gethostname(), None, socket.AF_INET)]
    for text in candidates:
        if is_local(text) and not ipaddress.ip_address(text).is_loopback and text not in found:
            found.append(text)
    return found


def certificate_hosts(host: str) -> list[str]:
    """The names the server's certificate must cover for a given bind address."""
    hosts = ["localhost", "127.0.0.1", "::1"]
    if host in ("0.0.0.0", "::", ""):
        hosts += lan_addresses()
    elif host not in hosts:
        hosts.append(host)
    return list(dict.fromkeys(hosts))


def is_local(host: str) -> bool:
    """Whether our name-constrained CA may sign for `host` (loopback or a private LAN)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host in LOCAL_NAMES
    return any(ip in net for net in LOCAL_NETWORKS)


def issue_server_certificate(authority: Authority, hosts: list[str]) -> tuple[Path, Path]:
    """Sign a fresh server certificate for `hosts`; returns (chain file, key file) beside the CA.

    The chain file holds the server certificate then the CA's, so a client that trusts the CA
    (or pins its key) can build the path."""
    ca_key = serialization.load_pem_private_key(authority.key_path.read_bytes(), None)
    ca_cert = authority.certificate
    key = ec.generate_private_key(ec.SECP256R1())
    alt: list[x509.GeneralName] = []
    for h in hosts:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            alt.append(x509.DNSName(h))
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "facefuse phone")]))
        .issuer_name(ca_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=SERVER_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=False, crl_sign=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256()))
    folder = authority.cert_path.parent
    chain, key_path = folder / "server-chain.pem", folder / "server.key"
    _write_private(key_path, _key_pem(key))
    _write_private(chain, cert.public_bytes(serialization.Encoding.PEM)
                   + ca_cert.public_bytes(serialization.Encoding.PEM))
    return chain, key_path
