"""SOAP calls through zeep: WSDL-described services on allow-listed hosts, safe XML parsing, idempotency keys.

Every document zeep loads and every endpoint it posts to passes the allow-list; XML with a DTD or entities
is refused, and documents beyond the WSDL itself (http imports) are never fetched.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import sys
import threading
import time
from collections import OrderedDict
from decimal import Decimal
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar
from urllib.parse import urlsplit

import requests
import zeep
import zeep.exceptions as zx
from lxml import etree
from zeep.helpers import serialize_object
from zeep.wsdl import Document
from zeep.wsse.username import UsernameToken

from connectors.base import Connector, ConnectorContext, ConnectorError, Operation
from connectors.base.net import host_allowed

SECRET = {"type": "string", "format": "secret", "minLength": 1}
RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504}
CACHE_TTL = 300.0  # seconds a parsed WSDL is reused; a changed WSDL is picked up after this
CACHE_SIZE = 32


def _forms_dir() -> Path:
    """forms/ in the source tree, else the installed copy under share/emflow (as the engine finds it)."""
    here = Path(__file__).resolve().parents[2] / "forms"
    return here if here.is_dir() else Path(sys.prefix) / "share" / "emflow" / "forms"


def _settings() -> zeep.Settings:
    """Parser settings for WSDLs and responses: no DTDs, no entities, no fetches beyond the WSDL itself."""
    return zeep.Settings(strict=True, xml_huge_tree=False, forbid_dtd=True, forbid_entities=True,
                         forbid_external=True)


def _forbidden(url: str) -> ConnectorError:
    shown = urlsplit(url).netloc or url
    return ConnectorError(f"{shown!r} is not on the allow-list; nothing was fetched from it", retryable=False,
                          code="soap.forbidden_host")


class GuardedTransport(zeep.Transport):
    """zeep's transport with every URL checked against the allow-list, no redirects, and the idempotency key."""

    def __init__(self, allowed: list[str], idempotency_key: str, forms_root: Path, **kwargs):
        super().__init__(**kwargs)
        self.allowed = list(allowed)
        self.idempotency_key = idempotency_key
        self.forms_root = forms_root
        self.last_status: int | None = None

    def check(self, url: str) -> None:
        """Refuse a URL off the allow-list, and any local file outside forms/ (a WSDL may import one)."""
        scheme = urlsplit(url).scheme
        if scheme in ("http", "https"):
            if not host_allowed(url, self.allowed):
                raise _forbidden(url)
            return
        if len(scheme) > 1:  # file:// and anything else; a one-letter "scheme" would be a drive letter
            raise _forbidden(url)
        if not Path(url).resolve().is_relative_to(self.forms_root):
            raise ConnectorError("the WSDL refers to a local file outside forms/", retryable=False,
                                 code="soap.forbidden_host")

    def load(self, url):
        self.check(url)
        return super().load(url)

    def _load_remote_data(self, url):
        # Redirects are not followed: the target would escape the allow-list check.
        response = self.session.get(url, timeout=self.load_timeout, allow_redirects=False)
        try:
            if response.status_code != 200:
                raise ConnectorError(f"loading {url} answered {response.status_code}",
                                     retryable=response.status_code in RETRYABLE_STATUS,
                                     code=f"soap.http.{response.status_code}")
            return response.content
        finally:
            response.close()

    def get(self, address, params, headers):
        self.check(address)
        return self.session.get(address, params=params, headers=headers, timeout=self.operation_timeout,
                                allow_redirects=False)

    def post(self, address, message, headers):
        self.check(address)
        headers = {**headers, "Idempotency-Key": self.idempotency_key}
        response = self.session.post(address, data=message, headers=headers, timeout=self.operation_timeout,
                                     allow_redirects=False)
        self.last_status = response.status_code
        return response

    def post_xml(self, address, envelope, headers):
        self.check(address)
        return super().post_xml(address, envelope, headers)


class _Sealed:
    """Stands in for the transport inside a cached WSDL: the cache must hold no session and no credentials."""

    def load(self, url):
        raise ConnectorError(f"the cached WSDL tried to load {url} after parsing", retryable=False,
                             code="soap.forbidden_host")


class _DocumentCache:
    """A small LRU of parsed WSDL documents with a time to live.

    It holds only zeep.wsdl.Document objects, which are not changed after parsing; their transport is
    replaced by ``_Sealed`` before they go in, so no HTTP session, connection or secret is kept. The key is
    the WSDL location and a SHA-256 digest of the whole configuration: a changed allow-list or credential
    gets its own entry, and no setting is stored in the clear.
    """

    def __init__(self, size: int = CACHE_SIZE, ttl: float = CACHE_TTL, clock=time.monotonic):
        self.size, self.ttl, self.clock = size, ttl, clock
        self.entries: OrderedDict[tuple[str, str], tuple[float, Any]] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: tuple[str, str]):
        with self.lock:
            found = self.entries.get(key)
            if found is None or found[0] < self.clock():
                self.entries.pop(key, None)
                return None
            self.entries.move_to_end(key)
            return found[1]

    def put(self, key: tuple[str, str], document) -> None:
        with self.lock:
            self.entries[key] = (self.clock() + self.ttl, document)
            self.entries.move_to_end(key)
            while len(self.entries) > self.size:
                self.entries.popitem(last=False)

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()


DOCUMENTS = _DocumentCache()


class SoapConnector(Connector):
    name = "soap"
    title = "SOAP 服务调用"
    config_schema: ClassVar[dict] = {
        "type": "object",
        "properties": {
            "wsdl": {"type": "string", "minLength": 1,
                     "description": "URL of the WSDL on an allowed host, or a path under forms/, e.g. soap/duty.wsdl"},
            "allowed_hosts": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1},
                              "description": "host, host:port or *.domain; the WSDL and its endpoint must be here"},
            "service": {"type": "string", "description": "wsdl:service name; default the first"},
            "port": {"type": "string", "description": "wsdl:port name; default the first of the service"},
            "auth": {
                "type": "object",
                "properties": {
                    "scheme": {"enum": ["none", "basic", "wsse"],
                               "description": "basic: HTTP Basic; wsse: WS-Security UsernameToken"},
                    "username": {"type": "string"},
                    "password": SECRET,
                    "digest": {"type": "boolean", "description": "wsse only: PasswordDigest instead of PasswordText"},
                },
                "required": ["scheme"],
            },
            "verify_tls": {"type": "boolean"},
        },
        "required": ["wsdl", "allowed_hosts"],
        "additionalProperties": False,
    }
    operations: ClassVar[dict] = {
        "Call": Operation(
            method="call_operation",
            description="Call one operation of the WSDL's service; the answer comes back as JSON "
                        "(dates as ISO strings, binary as base64).",
            params={
                "type": "object",
                "properties": {
                    "operation": {"type": "string", "minLength": 1},
                    "arguments": {"type": "object", "description": "the operation's input elements by name"},
                },
                "required": ["operation"],
                "additionalProperties": False,
            },
            result={"description": "the response body: an object for most operations, null for one-way ones"},
        ),
        "Describe": Operation(
            method="describe_service",
            description="List the WSDL's services, ports and operations with their input and output elements.",
            params={"type": "object", "additionalProperties": False},
            result={"type": "object", "properties": {"services": {"type": "array"}}, "required": ["services"]},
            retries=1,
        ),
    }

    def check(self) -> None:
        self._location()

    # -- operations -------------------------------------------------------------------------------------------
    def call_operation(self, context: ConnectorContext, operation: str, arguments: dict | None = None):
        """Call ``operation`` with ``arguments`` and return the response as JSON-able data."""
        transport = self._transport(context)
        with transport.session:
            client = self._client(transport)
            service = self._bind(client)
            if operation not in service._binding.all():
                offered = ", ".join(sorted(service._binding.all())) or "none"
                raise ConnectorError(f"the service has no operation {operation!r} (it offers: {offered})",
                                     retryable=False, code="soap.bad_request")
            arguments = dict(arguments or {})
            try:
                # Built once up front so argument errors are told apart from errors in the answer.
                client.create_message(service, operation, **arguments)
            except (TypeError, ValueError, zx.ValidationError, zx.LookupError) as exc:
                raise ConnectorError(f"the arguments do not fit operation {operation!r}: {_plain(exc)}",
                                     retryable=False, code="soap.bad_request") from None
            try:
                result = service[operation](**arguments)
            except ConnectorError:
                raise
            except Exception as exc:  # noqa: BLE001 - translated to a code, or re-raised unchanged
                raise _translate(exc, operation, transport) from None
        return _jsonable(serialize_object(result, target_cls=dict))

    def describe_service(self, context: ConnectorContext) -> dict:
        """The WSDL's services, ports and operations, for the service catalogue and the modeler."""
        transport = self._transport(context)
        with transport.session:
            document = self._document(transport)
        services = []
        for service in document.services.values():
            ports = []
            for port in service.ports.values():
                binding = port.binding
                operations = [{"name": name, "input": _fields(op.input), "output": _fields(op.output)}
                              for name, op in sorted(binding.all().items())]
                ports.append({"name": port.name, "address": port.binding_options.get("address"),
                              "binding": etree.QName(binding.name).localname, "operations": operations})
            services.append({"name": service.name, "ports": ports})
        return {"services": services}

    # -- plumbing ---------------------------------------------------------------------------------------------
    def _location(self) -> str:
        """The WSDL as an allow-listed URL or an absolute path inside forms/."""
        if not self.config.get("allowed_hosts"):
            raise ConnectorError("no allowed hosts are configured", retryable=False, code="soap.config")
        wsdl = self.config.get("wsdl") or ""
        scheme = urlsplit(wsdl).scheme
        if scheme in ("http", "https"):
            if not host_allowed(wsdl, self.config.get("allowed_hosts") or []):
                raise _forbidden(wsdl)
            return wsdl
        path = PurePosixPath(wsdl)
        if (not wsdl or scheme or path.is_absolute() or "\\" in wsdl or "\x00" in wsdl
                or any(part in ("..", ".", "") for part in wsdl.split("/"))):
            raise ConnectorError(f"wsdl {wsdl!r} must be an http(s) URL or a plain path under forms/",
                                 retryable=False, code="soap.config")
        root = _forms_dir().resolve()
        target = (root / path).resolve()
        # resolve() follows symlinks: a link pointing outside forms/ is refused like '..'.
        if not target.is_relative_to(root) or not target.is_file():
            raise ConnectorError(f"wsdl {wsdl!r} not found under forms/", retryable=False, code="soap.config")
        return str(target)

    def _transport(self, context: ConnectorContext) -> GuardedTransport:
        session = requests.Session()
        session.trust_env = False  # no proxies or .netrc credentials from the worker's environment
        session.verify = self.config.get("verify_tls", True)
        auth = self.config.get("auth") or {"scheme": "none"}
        if auth["scheme"] == "basic":
            # As UTF-8 bytes: requests would encode str credentials as Latin-1 and fail on Chinese.
            session.auth = (auth.get("username", "").encode(), auth.get("password", "").encode())
        return GuardedTransport(self.config.get("allowed_hosts") or [], context.idempotency_key, _forms_dir().resolve(),
                                session=session, timeout=context.timeout, operation_timeout=context.timeout)

    def _document(self, transport: GuardedTransport):
        """The parsed WSDL, from the cache when this configuration loaded it recently."""
        location = self._location()
        digest = hashlib.sha256(json.dumps(self.config, sort_keys=True, default=str).encode()).hexdigest()
        key = (location, digest)
        document = DOCUMENTS.get(key)
        if document is None:
            try:
                document = Document(location, transport, settings=_settings())
            except ConnectorError:
                raise
            except Exception as exc:  # noqa: BLE001 - translated to a code, or re-raised unchanged
                raise _translate(exc, "loading the WSDL", transport, allowed=self.config["allowed_hosts"]) from None
            document.transport = document.types._transport = _Sealed()
            DOCUMENTS.put(key, document)
        return document

    def _client(self, transport: GuardedTransport) -> zeep.Client:
        document = self._document(transport)
        auth = self.config.get("auth") or {"scheme": "none"}
        wsse = None
        if auth["scheme"] == "wsse":
            wsse = UsernameToken(auth.get("username", ""), auth.get("password", ""),
                                 use_digest=bool(auth.get("digest")))
        return zeep.Client(document, wsse=wsse, transport=transport, settings=_settings(),
                           service_name=self.config.get("service"), port_name=self.config.get("port"))

    def _bind(self, client: zeep.Client):
        try:
            return client.service
        except (ValueError, KeyError, IndexError, zx.Error) as exc:
            raise ConnectorError(f"the WSDL has no usable service/port: {_plain(exc)}", retryable=False,
                                 code="soap.config") from None


def _translate(exc: Exception, what: str, transport: GuardedTransport, allowed: list[str] | None = None
               ) -> Exception:
    """A zeep, requests or lxml failure as a ConnectorError with a code; anything else unchanged."""
    if isinstance(exc, zx.Fault):
        if not exc.code and (transport.last_status or 0) >= 300:
            # A non-200 answer that is XML but no Fault: judge it by its HTTP status.
            status = transport.last_status
            return ConnectorError(f"{what} answered HTTP {status}", retryable=status in RETRYABLE_STATUS,
                                  code=f"soap.http.{status}")
        local = (exc.code or "Unknown").rpartition("}")[2].rpartition(":")[2] or "Unknown"
        return ConnectorError(f"{what} failed with SOAP fault {local}: {(exc.message or '')[:500]}",
                              retryable=False, code=f"soap.fault.{local}")
    if isinstance(exc, (zx.DTDForbidden, zx.EntitiesForbidden)):
        # The message names no entity content: the point of refusing is that nothing leaks.
        return ConnectorError(f"{what}: the XML declares a DTD or entities, which are never parsed",
                              retryable=False, code="soap.forbidden_xml")
    if isinstance(exc, zx.ExternalReferenceForbidden):
        url = str(getattr(exc, "url", "") or "")
        if allowed is not None and not host_allowed(url, allowed):
            return _forbidden(url)
        return ConnectorError(f"{what}: the WSDL imports {urlsplit(url).netloc or url!r}; only single-file WSDLs "
                              "(e.g. ?singleWsdl) are loaded", retryable=False, code="soap.forbidden_import")
    if isinstance(exc, zx.TransportError):
        status = exc.status_code or 0
        if status >= 300:
            return ConnectorError(f"{what} answered HTTP {status}", retryable=status in RETRYABLE_STATUS,
                                  code=f"soap.http.{status}")
        return ConnectorError(f"{what}: the answer is not well-formed XML", retryable=False, code="soap.malformed")
    if isinstance(exc, requests.Timeout):
        return ConnectorError(f"{what} timed out", code="soap.timeout")
    if isinstance(exc, requests.ConnectionError):
        return ConnectorError(f"{what} could not connect: {type(exc).__name__}", code="soap.unreachable")
    if isinstance(exc, requests.RequestException):
        return ConnectorError(f"{what} failed: {type(exc).__name__}", retryable=False, code="soap.error")
    if isinstance(exc, (zx.XMLSyntaxError, zx.XMLParseError, zx.UnexpectedElementError, zx.WsdlSyntaxError,
                        etree.XMLSyntaxError, TypeError, ValueError, zx.ValidationError)):
        return ConnectorError(f"{what}: the answer does not fit the WSDL: {_plain(exc)}", retryable=False,
                              code="soap.malformed")
    if isinstance(exc, zx.Error):
        return ConnectorError(f"{what} failed: {type(exc).__name__}: {_plain(exc)}", retryable=False,
                              code="soap.error")
    return exc


def _plain(exc: Exception) -> str:
    """An exception's message, cut short: zeep messages may quote whole documents."""
    return (getattr(exc, "message", None) or str(exc))[:300]


def _fields(message) -> list[dict]:
    """The child elements of an operation's input or output body: name, XSD type, required, repeated."""
    body = getattr(message, "body", None)
    elements = getattr(getattr(body, "type", None), "elements", None) or []
    found = []
    for name, element in elements:
        xsd_type = getattr(element, "type", None)
        qname = getattr(xsd_type, "qname", None)
        found.append({"name": name, "type": etree.QName(qname).localname if qname is not None else None,
                      "required": getattr(element, "min_occurs", 1) > 0,
                      "repeated": getattr(element, "max_occurs", 1) != 1})
    return found


def _jsonable(value):
    """zeep's Python values as JSON types: decimals as numbers, dates as ISO strings, bytes as base64."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Decimal):
        if not value.is_finite():
            return str(value)
        if value == value.to_integral_value():
            return int(value)
        # A float that would not read back as the same decimal keeps its exact digits as a string.
        return float(value) if Decimal(repr(float(value))) == value else str(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, etree._Element):
        return etree.tostring(value, encoding="unicode")
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)  # durations and other XSD values: their text form
