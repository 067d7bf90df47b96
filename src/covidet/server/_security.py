"""Triton security settings: restricted admin APIs, gRPC TLS, test certificates, admin secret.

Triton 2.51 syntax (from ``tritonserver --help`` and the protocol customization guide):
``--grpc-restricted-protocol=<p1>,<p2>,...:<header>=<value>`` and
``--http-restricted-api=<a1>,<a2>,...:<header>=<value>``; a restricted call succeeds only when the
request carries the header with that value: on HTTP ``<header>``, on gRPC the metadata key
``triton-grpc-protocol-<header>`` (Triton adds that prefix; `admin_headers` gives the right one). A
refused gRPC call fails with status UNAVAILABLE, "This protocol is restricted, expecting header
...". TLS exists for gRPC only (``--grpc-use-ssl`` ...); put HTTP
behind a TLS-terminating proxy or keep it cluster-internal.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import os
import re
import secrets
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ADMIN_APIS",
    "GRPC_HEADER_PREFIX",
    "TRITON_APIS",
    "TlsFiles",
    "admin_headers",
    "generate_self_signed",
    "load_or_create_admin_secret",
    "restricted_api_args",
    "tls_args",
]

#: Triton prefixes the configured header name with this on gRPC (not on HTTP).
GRPC_HEADER_PREFIX = "triton-grpc-protocol-"

#: Every protocol group Triton 2.51 can restrict (same names for gRPC and HTTP).
TRITON_APIS = (
    "health",
    "metadata",
    "inference",
    "shared-memory",
    "model-config",
    "model-repository",
    "statistics",
    "trace",
    "logging",
)
#: The administrative groups covidet locks by default: clients keep health, metadata, inference.
ADMIN_APIS = ("model-repository", "model-config", "shared-memory", "statistics", "trace")

# gRPC metadata keys are lower-case; "-bin" keys carry binary values and are not allowed here.
_HEADER_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
# The value sits after "=" in one command-line flag: no separators, no whitespace, printable ASCII.
_SECRET_RE = re.compile(r"^[A-Za-z0-9._~+/-]{16,256}$")


def _check_header(header: str) -> None:
    if not _HEADER_RE.match(header) or header.endswith("-bin"):
        raise ValueError(
            f"restricted-API header {header!r} is not usable: expected a lower-case header name "
            "of letters, digits, '.', '_' or '-' (not ending in '-bin'), e.g. 'covidet-admin-key'"
        )


def _check_secret(secret: str) -> None:
    if not _SECRET_RE.match(secret):
        raise ValueError(
            f"admin secret of {len(secret)} characters is not usable: expected 16-256 characters "
            "from A-Z a-z 0-9 . _ ~ + / - (no ',', ':', '=' or whitespace); create one with "
            "load_or_create_admin_secret() or `python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))'`"
        )


def restricted_api_args(header: str, secret: str, apis: Sequence[str] = ADMIN_APIS) -> list[str]:
    """Triton flags that lock ``apis`` on gRPC and HTTP behind the header ``header: secret``."""
    _check_header(header)
    _check_secret(secret)
    if not apis:
        raise ValueError("no APIs to restrict: pass at least one of " + ", ".join(TRITON_APIS))
    unknown = [a for a in apis if a not in TRITON_APIS]
    if unknown:
        raise ValueError(
            f"unknown Triton API group(s) {unknown}: expected names from {', '.join(TRITON_APIS)}"
        )
    spec = f"{','.join(apis)}:{header}={secret}"
    return [f"--grpc-restricted-protocol={spec}", f"--http-restricted-api={spec}"]


def admin_headers(header: str, secret: str, protocol: str) -> dict[str, str]:
    """The request headers that unlock restricted APIs for a ``protocol`` ("grpc" or "http") client."""
    _check_header(header)
    if protocol == "grpc":
        return {GRPC_HEADER_PREFIX + header: secret}
    if protocol == "http":
        return {header: secret}
    raise ValueError(f"unknown protocol {protocol!r}: expected 'grpc' or 'http'")


def tls_args(
    cert: str | os.PathLike[str],
    key: str | os.PathLike[str],
    ca: str | os.PathLike[str] | None = None,
    mutual: bool = False,
    *,
    check_files: bool = True,
) -> list[str]:
    """Triton flags for gRPC TLS (server ``cert``/``key``; with ``mutual``, clients need ``ca``)."""
    if mutual and ca is None:
        raise ValueError("mutual TLS needs the CA that signed the client certificates: pass ca=<ca.pem>")
    files = {"server certificate": cert, "server key": key}
    if ca is not None:
        files["root (CA) certificate"] = ca
    if check_files:
        for what, path in files.items():
            if not Path(path).is_file():
                raise FileNotFoundError(
                    f"gRPC TLS {what} {os.fspath(path)!r} does not exist: pass PEM files "
                    "(generate_self_signed() makes a test set)"
                )
    args = [
        "--grpc-use-ssl=true",
        f"--grpc-server-cert={os.fspath(cert)}",
        f"--grpc-server-key={os.fspath(key)}",
    ]
    if ca is not None:
        args.append(f"--grpc-root-cert={os.fspath(ca)}")
    if mutual:
        args.append("--grpc-use-ssl-mutual=true")
    return args


@dataclass(frozen=True)
class TlsFiles:
    """PEM files written by `generate_self_signed` (keys are mode 0600)."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.chmod(path, 0o600)


def generate_self_signed(
    directory: str | os.PathLike[str],
    hosts: Sequence[str] = ("127.0.0.1", "localhost"),
    days: int = 30,
) -> TlsFiles:
    """A test CA, a server certificate for ``hosts`` and a client certificate (EC P-256).

    For tests and local trials only: production certificates come from the cluster's issuer.
    """
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ImportError(
            "generate_self_signed needs the `cryptography` package: pip install cryptography"
        ) from exc
    if not hosts:
        raise ValueError("no hosts for the server certificate: pass e.g. ('127.0.0.1', 'localhost')")

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    now = _dt.datetime.now(_dt.timezone.utc)
    not_before, not_after = now - _dt.timedelta(minutes=5), now + _dt.timedelta(days=days)

    def name(cn: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "covidet (self-signed, test only)"),
                x509.NameAttribute(NameOID.COMMON_NAME, cn),
            ]
        )

    def key_pem(k: ec.EllipticCurvePrivateKey) -> bytes:
        return k.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name("covidet test CA")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(cn: str, usage: x509.ObjectIdentifier, sans: list[x509.GeneralName]) -> tuple:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(cn))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(ca_key, hashes.SHA256()), key

    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    server_cert, server_key = leaf(hosts[0], ExtendedKeyUsageOID.SERVER_AUTH, sans)
    client_cert, client_key = leaf("covidet test client", ExtendedKeyUsageOID.CLIENT_AUTH, [])

    files = TlsFiles(
        ca_cert=out / "ca.crt",
        ca_key=out / "ca.key",
        server_cert=out / "server.crt",
        server_key=out / "server.key",
        client_cert=out / "client.crt",
        client_key=out / "client.key",
    )
    pem = serialization.Encoding.PEM
    files.ca_cert.write_bytes(ca_cert.public_bytes(pem))
    files.server_cert.write_bytes(server_cert.public_bytes(pem))
    files.client_cert.write_bytes(client_cert.public_bytes(pem))
    _write_private(files.ca_key, key_pem(ca_key))
    _write_private(files.server_key, key_pem(server_key))
    _write_private(files.client_key, key_pem(client_key))
    return files


def load_or_create_admin_secret(path: str | os.PathLike[str]) -> str:
    """The admin token stored at ``path``; a new random one (file mode 0600) if there is none."""
    p = Path(path)
    if p.exists():
        mode = stat.S_IMODE(p.stat().st_mode)
        if mode & 0o077:
            raise PermissionError(
                f"admin secret file {p} has mode {mode:04o}: expected 0600 (only the owner may "
                f"read it); fix it with `chmod 600 {p}`"
            )
        secret = p.read_text().strip()
        _check_secret(secret)
        return secret
    p.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(32)
    try:
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it meanwhile: use theirs
        return load_or_create_admin_secret(p)
    try:
        os.write(fd, (secret + "\n").encode())
    finally:
        os.close(fd)
    return secret
