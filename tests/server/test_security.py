"""Security settings: argument builders, test certificates, admin secret, and a real Triton."""

from __future__ import annotations

import ipaddress
import os
import stat
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from covidet.server._security import (
    TlsFiles,
    admin_headers,
    generate_self_signed,
    load_or_create_admin_secret,
    restricted_api_args,
    tls_args,
)

HEADER = "covidet-admin-key"
SECRET = "s3cr3t-token_for.tests~0123456789"


# --- argument builders -----------------------------------------------------------------------------


def test_restricted_api_args_triton_syntax() -> None:
    args = restricted_api_args(HEADER, SECRET)
    spec = "model-repository,model-config,shared-memory,statistics,trace:" + f"{HEADER}={SECRET}"
    assert args == [f"--grpc-restricted-protocol={spec}", f"--http-restricted-api={spec}"]


def test_restricted_api_args_custom_groups() -> None:
    args = restricted_api_args(HEADER, SECRET, apis=("statistics",))
    assert args[0] == f"--grpc-restricted-protocol=statistics:{HEADER}={SECRET}"


@pytest.mark.parametrize("header", ["Covidet-Admin", "has space", "x-bin", "", "a:b", "a=b"])
def test_restricted_api_args_rejects_bad_header(header: str) -> None:
    with pytest.raises(ValueError, match="header"):
        restricted_api_args(header, SECRET)


@pytest.mark.parametrize("secret", ["short", "a" * 20 + ",b", "a" * 20 + ":b", "a" * 20 + "=b", "a b" * 10])
def test_restricted_api_args_rejects_bad_secret(secret: str) -> None:
    with pytest.raises(ValueError, match="secret"):
        restricted_api_args(HEADER, secret)


def test_restricted_api_args_rejects_unknown_group() -> None:
    with pytest.raises(ValueError, match="unknown Triton API"):
        restricted_api_args(HEADER, SECRET, apis=("model-repository", "admin"))
    with pytest.raises(ValueError, match="at least one"):
        restricted_api_args(HEADER, SECRET, apis=())


def test_admin_headers() -> None:
    assert admin_headers(HEADER, SECRET, "http") == {HEADER: SECRET}
    assert admin_headers(HEADER, SECRET, "grpc") == {f"triton-grpc-protocol-{HEADER}": SECRET}
    with pytest.raises(ValueError, match="unknown protocol"):
        admin_headers(HEADER, SECRET, "rest")


def test_tls_args(tmp_path: Path) -> None:
    cert, key, ca = (tmp_path / n for n in ("s.crt", "s.key", "ca.crt"))
    for f in (cert, key, ca):
        f.write_text("x")
    assert tls_args(cert, key) == [
        "--grpc-use-ssl=true",
        f"--grpc-server-cert={cert}",
        f"--grpc-server-key={key}",
    ]
    assert tls_args(cert, key, ca, mutual=True)[-2:] == [
        f"--grpc-root-cert={ca}",
        "--grpc-use-ssl-mutual=true",
    ]
    with pytest.raises(ValueError, match="mutual TLS needs"):
        tls_args(cert, key, mutual=True)
    with pytest.raises(FileNotFoundError, match="server key"):
        tls_args(cert, tmp_path / "missing.key")
    # paths inside a container need not exist here
    assert tls_args("/tls/tls.crt", "/tls/tls.key", check_files=False)[1] == "--grpc-server-cert=/tls/tls.crt"


# --- certificates and the admin secret -------------------------------------------------------------


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return generate_self_signed(tmp_path_factory.mktemp("tls"))


def test_generate_self_signed(tls: TlsFiles) -> None:
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    ca = x509.load_pem_x509_certificate(tls.ca_cert.read_bytes())
    server = x509.load_pem_x509_certificate(tls.server_cert.read_bytes())
    client = x509.load_pem_x509_certificate(tls.client_cert.read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in sans.get_values_for_type(x509.IPAddress)
    assert "localhost" in sans.get_values_for_type(x509.DNSName)
    for leaf, usage in ((server, ExtendedKeyUsageOID.SERVER_AUTH), (client, ExtendedKeyUsageOID.CLIENT_AUTH)):
        assert leaf.issuer == ca.subject
        leaf.verify_directly_issued_by(ca)  # raises if the signature does not verify
        assert usage in leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    for key in (tls.ca_key, tls.server_key, tls.client_key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_admin_secret_created_once_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "admin-token"
    first = load_or_create_admin_secret(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) >= 32
    assert load_or_create_admin_secret(path) == first
    assert load_or_create_admin_secret(tmp_path / "other") != first
    restricted_api_args(HEADER, first)  # usable as is


def test_admin_secret_refuses_readable_file(tmp_path: Path) -> None:
    path = tmp_path / "admin-token"
    path.write_text(SECRET)
    os.chmod(path, 0o644)
    with pytest.raises(PermissionError, match="chmod 600"):
        load_or_create_admin_secret(path)
    os.chmod(path, 0o600)
    assert load_or_create_admin_secret(path) == SECRET


# --- a real Triton server (the nvidia-pytriton build) ----------------------------------------------

_IDENTITY = textwrap.dedent(
    """
    import triton_python_backend_utils as pb_utils

    class TritonPythonModel:
        def execute(self, requests):
            out = []
            for r in requests:
                x = pb_utils.get_input_tensor_by_name(r, "X").as_numpy()
                out.append(pb_utils.InferenceResponse([pb_utils.Tensor("Y", x * 2)]))
            return out
    """
)
_CONFIG = """
name: "identity"
backend: "python"
max_batch_size: 0
input { name: "X" data_type: TYPE_FP32 dims: [ -1 ] }
output { name: "Y" data_type: TYPE_FP32 dims: [ -1 ] }
instance_group { count: 1 kind: KIND_CPU }
"""


@pytest.fixture(scope="module")
def secure_server(tmp_path_factory: pytest.TempPathFactory, tls: TlsFiles) -> Iterator[object]:
    """Triton with restricted admin APIs and mutual gRPC TLS, serving a one-line Python model."""
    try:
        from covidet.server import TritonServer, find_tritonserver

        find_tritonserver()
    except Exception as exc:  # no server binary in this installation
        pytest.skip(f"no Triton server binary: {exc}")
    repo = tmp_path_factory.mktemp("secure_repo")
    (repo / "identity" / "1").mkdir(parents=True)
    (repo / "identity" / "1" / "model.py").write_text(_IDENTITY)
    (repo / "identity" / "config.pbtxt").write_text(_CONFIG)
    server = TritonServer.on_free_ports(
        repo,
        model_control_mode="explicit",
        extra_args=[
            *restricted_api_args(HEADER, SECRET),
            *tls_args(tls.server_cert, tls.server_key, tls.ca_cert, mutual=True),
        ],
    )
    server.start()
    try:
        server.wait_ready(model="identity", timeout=120)
        yield server
    finally:
        server.stop()


def _grpc(server: object, tls: TlsFiles | None, client_cert: bool = True) -> object:
    import tritonclient.grpc as grpcclient

    url = server.grpc_url  # type: ignore[attr-defined]
    if tls is None:
        return grpcclient.InferenceServerClient(url)
    return grpcclient.InferenceServerClient(
        url,
        ssl=True,
        root_certificates=str(tls.ca_cert),
        private_key=str(tls.client_key) if client_cert else None,
        certificate_chain=str(tls.client_cert) if client_cert else None,
    )


def _infer_grpc(client: object) -> np.ndarray:
    import tritonclient.grpc as grpcclient

    x = np.arange(4, dtype=np.float32)
    inp = grpcclient.InferInput("X", [4], "FP32")
    inp.set_data_from_numpy(x)
    result = client.infer("identity", [inp], client_timeout=20)  # type: ignore[attr-defined]
    return np.asarray(result.as_numpy("Y"))


def test_http_admin_apis_need_the_header(secure_server: object) -> None:
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    client = httpclient.InferenceServerClient(secure_server.http_url)  # type: ignore[attr-defined]
    try:
        # open to everyone: health, metadata, inference
        assert client.is_server_ready()
        x = np.arange(3, dtype=np.float32)
        inp = httpclient.InferInput("X", [3], "FP32")
        inp.set_data_from_numpy(x)
        np.testing.assert_array_equal(client.infer("identity", [inp]).as_numpy("Y"), x * 2)
        # locked without the header, or with a wrong value
        for headers in (None, {HEADER: "wrong-value-0123456789"}, admin_headers(HEADER, SECRET, "grpc")):
            with pytest.raises(InferenceServerException, match="restricted"):
                client.get_model_repository_index(headers=headers)
            with pytest.raises(InferenceServerException, match="restricted"):
                client.load_model("identity", headers=headers)
            with pytest.raises(InferenceServerException, match="restricted"):
                client.get_inference_statistics("identity", headers=headers)
        # allowed with it
        ok = admin_headers(HEADER, SECRET, "http")
        index = client.get_model_repository_index(headers=ok)
        assert [m["name"] for m in index] == ["identity"]
        client.load_model("identity", headers=ok)
        assert client.get_model_config("identity", headers=ok)["name"] == "identity"
    finally:
        client.close()


def test_grpc_mutual_tls_and_restricted_apis(secure_server: object, tls: TlsFiles) -> None:
    from tritonclient.utils import InferenceServerException

    client = _grpc(secure_server, tls)
    try:
        np.testing.assert_array_equal(_infer_grpc(client), np.arange(4, dtype=np.float32) * 2)
        with pytest.raises(InferenceServerException, match="restricted"):
            client.get_model_repository_index()  # type: ignore[attr-defined]
        for headers in (None, {HEADER: SECRET}):  # the HTTP header name is not the gRPC one
            with pytest.raises(InferenceServerException, match="restricted"):
                client.load_model("identity", headers=headers)  # type: ignore[attr-defined]
        ok = admin_headers(HEADER, SECRET, "grpc")
        index = client.get_model_repository_index(headers=ok)  # type: ignore[attr-defined]
        assert [m.name for m in index.models] == ["identity"]
        client.load_model("identity", headers=ok)  # type: ignore[attr-defined]
    finally:
        client.close()  # type: ignore[attr-defined]


@pytest.mark.parametrize("how", ["plaintext", "tls-without-client-cert"])
def test_grpc_refuses_plaintext_and_unauthenticated_clients(
    secure_server: object, tls: TlsFiles, how: str
) -> None:
    from tritonclient.utils import InferenceServerException

    client = _grpc(secure_server, None if how == "plaintext" else tls, client_cert=False)
    try:
        with pytest.raises(InferenceServerException):
            _infer_grpc(client)
    finally:
        client.close()  # type: ignore[attr-defined]
