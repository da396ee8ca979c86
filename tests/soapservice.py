"""A real SOAP 1.1 service on 127.0.0.1 standing in for the provincial emergency-duty system, with scripted faults.

``GET /service?wsdl`` serves its WSDL (document/literal); ``POST /service`` answers ``ReportIncident`` and
``QueryDuty``. Each request is recorded (method, path, headers, body, operation, arguments, WS-Security
token). ``plan`` maps an operation name to behaviours taken one per call ("fault", "500", "slow:<seconds>",
"malformed", "xxe", "ok"); ``documents`` maps extra paths to bytes served on GET (other WSDLs for tests).
Requests are parsed the safe way: no entities resolved, no network, no DTD loaded.
"""
from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

from lxml import etree

TNS = "http://yjgl.gxzf.gov.cn/duty"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
# The duty roster the service answers QueryDuty from (region -> leader, phone).
ROSTER = {"南宁市": ("王建国", "0771-5551234"), "柳州市": ("李秀英", "0772-5556789")}

WSDL = """<?xml version="1.0" encoding="UTF-8"?>
<wsdl:definitions xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/" xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/"
    xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:tns="{tns}" targetNamespace="{tns}" name="EmergencyDuty">
  <wsdl:types>
    <xsd:schema targetNamespace="{tns}" elementFormDefault="qualified">{imports}
      <xsd:element name="ReportIncident"><xsd:complexType><xsd:sequence>
        <xsd:element name="title" type="xsd:string"/>
        <xsd:element name="level" type="xsd:int"/>
        <xsd:element name="region" type="xsd:string"/>
        <xsd:element name="occurredAt" type="xsd:dateTime"/>
      </xsd:sequence></xsd:complexType></xsd:element>
      <xsd:element name="ReportIncidentResponse"><xsd:complexType><xsd:sequence>
        <xsd:element name="ticket" type="xsd:string"/>
        <xsd:element name="accepted" type="xsd:boolean"/>
      </xsd:sequence></xsd:complexType></xsd:element>
      <xsd:element name="QueryDuty"><xsd:complexType><xsd:sequence>
        <xsd:element name="date" type="xsd:date"/>
        <xsd:element name="region" type="xsd:string"/>
      </xsd:sequence></xsd:complexType></xsd:element>
      <xsd:element name="QueryDutyResponse"><xsd:complexType><xsd:sequence>
        <xsd:element name="leader" type="xsd:string"/>
        <xsd:element name="phone" type="xsd:string"/>
      </xsd:sequence></xsd:complexType></xsd:element>
    </xsd:schema>
  </wsdl:types>
  <wsdl:message name="ReportIncidentIn"><wsdl:part name="parameters" element="tns:ReportIncident"/></wsdl:message>
  <wsdl:message name="ReportIncidentOut"><wsdl:part name="parameters" element="tns:ReportIncidentResponse"/>
  </wsdl:message>
  <wsdl:message name="QueryDutyIn"><wsdl:part name="parameters" element="tns:QueryDuty"/></wsdl:message>
  <wsdl:message name="QueryDutyOut"><wsdl:part name="parameters" element="tns:QueryDutyResponse"/></wsdl:message>
  <wsdl:portType name="DutyPortType">
    <wsdl:operation name="ReportIncident">
      <wsdl:input message="tns:ReportIncidentIn"/><wsdl:output message="tns:ReportIncidentOut"/>
    </wsdl:operation>
    <wsdl:operation name="QueryDuty">
      <wsdl:input message="tns:QueryDutyIn"/><wsdl:output message="tns:QueryDutyOut"/>
    </wsdl:operation>
  </wsdl:portType>
  <wsdl:binding name="DutyBinding" type="tns:DutyPortType">
    <soap:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>
    <wsdl:operation name="ReportIncident">
      <soap:operation soapAction="{tns}/ReportIncident"/>
      <wsdl:input><soap:body use="literal"/></wsdl:input><wsdl:output><soap:body use="literal"/></wsdl:output>
    </wsdl:operation>
    <wsdl:operation name="QueryDuty">
      <soap:operation soapAction="{tns}/QueryDuty"/>
      <wsdl:input><soap:body use="literal"/></wsdl:input><wsdl:output><soap:body use="literal"/></wsdl:output>
    </wsdl:operation>
  </wsdl:binding>
  <wsdl:service name="EmergencyDutyService">
    <wsdl:port name="DutyPort" binding="tns:DutyBinding"><soap:address location="{address}"/></wsdl:port>
  </wsdl:service>
</wsdl:definitions>
"""


def envelope(body: str, prolog: str = "") -> bytes:
    """A SOAP 1.1 envelope around ``body`` (already XML), optionally after a prolog such as a DOCTYPE."""
    return (f'<?xml version="1.0" encoding="UTF-8"?>{prolog}<soap:Envelope xmlns:soap="{SOAP_ENV}">'
            f"<soap:Body>{body}</soap:Body></soap:Envelope>").encode()


def _text(node, name: str) -> str | None:
    child = node.find(f"{{{TNS}}}{name}")
    return child.text if child is not None else None


class SoapService:
    """Start with ``with SoapService() as service:``; ``service.wsdl_url`` is where zeep finds the WSDL."""

    def __init__(self):
        self.requests: list[dict] = []
        self.plan: dict[str, list[str]] = {}
        self.documents: dict[str, bytes] = {}
        self.tickets = 0
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                return

            def do_GET(self):
                parts = urlsplit(self.path)
                with outer.lock:
                    outer.requests.append({"method": "GET", "path": parts.path, "query": parts.query,
                                           "headers": {k.lower(): v for k, v in self.headers.items()}})
                if parts.path == "/service" and parts.query.lower() == "wsdl":
                    outer.send(self, 200, outer.wsdl().encode())
                elif parts.path in outer.documents:
                    outer.send(self, 200, outer.documents[parts.path])
                else:
                    outer.send(self, 404, b"not found", "text/plain")

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                record = {"method": "POST", "path": urlsplit(self.path).path,
                          "headers": {k.lower(): v for k, v in self.headers.items()},
                          "body": body.decode("utf-8", "replace")}
                record.update(outer.parse(body))
                with outer.lock:
                    outer.requests.append(record)
                    steps = outer.plan.get(record.get("operation") or "")
                    behaviour = steps.pop(0) if steps else "ok"
                outer.respond(self, behaviour, record)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.host = f"127.0.0.1:{self.server.server_port}"
        self.wsdl_url = f"{self.url}/service?wsdl"

    def wsdl(self, address: str | None = None, imports: str = "") -> str:
        """The service's WSDL; tests vary the endpoint ``address`` or add schema ``imports``."""
        return WSDL.format(tns=TNS, address=escape(address or f"{self.url}/service", {'"': "&quot;"}),
                           imports=imports)

    @staticmethod
    def parse(body: bytes) -> dict:
        """The operation, its arguments (element name -> text) and any UsernameToken of a request."""
        try:
            root = etree.fromstring(body, PARSER)
        except etree.XMLSyntaxError as exc:
            return {"operation": None, "error": str(exc)}
        found: dict = {"operation": None, "arguments": {}, "security": None}
        payload = root.find(f"{{{SOAP_ENV}}}Body/*")
        if payload is not None:
            found["operation"] = etree.QName(payload).localname
            found["arguments"] = {etree.QName(child).localname: child.text for child in payload}
        token = root.find(f"{{{SOAP_ENV}}}Header/{{{WSSE}}}Security/{{{WSSE}}}UsernameToken")
        if token is not None:
            password = token.find(f"{{{WSSE}}}Password")
            found["security"] = {"username": token.findtext(f"{{{WSSE}}}Username"),
                                 "password": password.text if password is not None else None,
                                 "type": password.get("Type") if password is not None else None,
                                 "nonce": token.findtext(f"{{{WSSE}}}Nonce"),
                                 "created": token.findtext(f"{{{WSU}}}Created")}
        return found

    def answer(self, record: dict) -> bytes:
        """The normal answer to a parsed request."""
        args = record.get("arguments") or {}
        if record.get("operation") == "ReportIncident":
            with self.lock:
                self.tickets += 1
                ticket = f"{args.get('region')}-{self.tickets:04d}"
            level = args.get("level") or ""
            if not level.lstrip("-").isdigit():
                return envelope("<soap:Fault><faultcode>soap:Client</faultcode>"
                                "<faultstring>level 必须是整数</faultstring></soap:Fault>")
            accepted = "true" if int(level) <= 4 else "false"
            return envelope(f'<tns:ReportIncidentResponse xmlns:tns="{TNS}"><tns:ticket>{escape(ticket)}</tns:ticket>'
                            f"<tns:accepted>{accepted}</tns:accepted></tns:ReportIncidentResponse>")
        if record.get("operation") == "QueryDuty":
            leader, phone = ROSTER.get(args.get("region") or "", ("值班室", "0771-12350"))
            return envelope(f'<tns:QueryDutyResponse xmlns:tns="{TNS}"><tns:leader>{leader}</tns:leader>'
                            f"<tns:phone>{phone}</tns:phone></tns:QueryDutyResponse>")
        return envelope("<soap:Fault><faultcode>soap:Client</faultcode>"
                        f"<faultstring>未知操作 {escape(str(record.get('operation')))}</faultstring></soap:Fault>")

    def respond(self, handler, behaviour: str, record: dict) -> None:
        status, body, kind = 200, None, "text/xml; charset=utf-8"
        if behaviour.startswith("slow:"):
            time.sleep(float(behaviour.split(":", 1)[1]))
        elif behaviour == "fault":
            status, body = 500, envelope("<soap:Fault><faultcode>soap:Client</faultcode>"
                                         "<faultstring>事件级别无效</faultstring></soap:Fault>")
        elif behaviour.isdigit():
            status, body, kind = int(behaviour), b"<html><body>Service Unavailable</body></html>", "text/html"
        elif behaviour == "malformed":
            body = b"<soap:Envelope><soap:Body><unclosed>"
        elif behaviour == "xxe":
            # An entity that would read a local file if the client expanded it.
            body = envelope(f'<tns:QueryDutyResponse xmlns:tns="{TNS}"><tns:leader>&leak;</tns:leader>'
                            "<tns:phone>1</tns:phone></tns:QueryDutyResponse>",
                            prolog='<!DOCTYPE soap:Envelope [<!ENTITY leak SYSTEM "file:///etc/hostname">]>')
        self.send(handler, status, body if body is not None else self.answer(record), kind)

    @staticmethod
    def send(handler, status: int, body: bytes, kind: str = "text/xml; charset=utf-8") -> None:
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", kind)
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
            pass

    def posts(self, operation: str | None = None) -> list[dict]:
        """Recorded POSTs, optionally only those of one operation."""
        return [r for r in self.requests if r["method"] == "POST" and operation in (None, r.get("operation"))]

    def __enter__(self) -> SoapService:
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
