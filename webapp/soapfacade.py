"""SOAP 1.1 for callers that only speak SOAP: a WSDL generated from a bus service's operation schemas,
envelopes parsed into JSON arguments and results written back as XML (document/literal, wrapped)."""
from __future__ import annotations

import re
from typing import Any
from xml.sax.saxutils import escape

from lxml import etree

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
XSD = "http://www.w3.org/2001/XMLSchema"
MAX_BYTES = 1024 * 1024
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")  # an XML element name without a prefix (NCName, ASCII)
XSD_TYPES = {"string": "xsd:string", "integer": "xsd:long", "number": "xsd:decimal", "boolean": "xsd:boolean"}
# No DTDs, entities or network: a SOAP body is data, never instructions to the parser.
PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                         remove_comments=True)


class SoapError(Exception):
    """The envelope cannot be read; answered as a Client fault."""


def namespace(service: str) -> str:
    return f"urn:emflow:services:{service}"


def _xsd_type(schema: dict) -> str:
    kind = schema.get("type")
    if kind == "string" and schema.get("format") == "date-time":
        return "xsd:dateTime"
    if kind == "string" and schema.get("format") == "date":
        return "xsd:date"
    return XSD_TYPES.get(kind if isinstance(kind, str) else "", "xsd:anyType")


def _attr(value: str) -> str:
    """Text for an XML attribute value in double quotes."""
    return escape(value, {'"': "&quot;"})


def _elements(schema: dict) -> str:
    props = (schema or {}).get("properties") or {}
    required = set((schema or {}).get("required") or [])
    if not props:
        return '<xsd:any minOccurs="0" maxOccurs="unbounded" processContents="skip"/>'
    out = []
    for name, sub in props.items():
        if not NAME.match(name):
            continue  # not expressible as an XML element; JSON callers still have it
        occurs = "" if name in required else ' minOccurs="0"'
        if sub.get("type") == "array":
            occurs = f'{occurs or ""} maxOccurs="unbounded"'
            sub = sub.get("items") or {}
        out.append(f'<xsd:element name="{name}" type="{_xsd_type(sub)}"{occurs}/>')
    return "".join(out)


def wsdl(service: dict, address: str) -> str:
    """A WSDL 1.1 document for a catalogue entry (see engine.bus.catalogue)."""
    ns, key = namespace(service["key"]), service["key"]
    types, messages, port_ops, binding_ops = [], [], [], []
    for op, schemas in service["operations"].items():
        types.append(f'<xsd:element name="{op}"><xsd:complexType><xsd:sequence>{_elements(schemas["params"])}'
                     f'</xsd:sequence></xsd:complexType></xsd:element>'
                     f'<xsd:element name="{op}Response"><xsd:complexType><xsd:sequence>'
                     f'{_elements(schemas["result"])}</xsd:sequence></xsd:complexType></xsd:element>')
        messages.append(f'<wsdl:message name="{op}Input"><wsdl:part name="parameters" element="tns:{op}"/>'
                        f'</wsdl:message><wsdl:message name="{op}Output"><wsdl:part name="parameters" '
                        f'element="tns:{op}Response"/></wsdl:message>')
        port_ops.append(f'<wsdl:operation name="{op}"><wsdl:input message="tns:{op}Input"/>'
                        f'<wsdl:output message="tns:{op}Output"/></wsdl:operation>')
        binding_ops.append(f'<wsdl:operation name="{op}"><soap:operation soapAction="{ns}#{op}"/>'
                           '<wsdl:input><soap:body use="literal"/></wsdl:input>'
                           '<wsdl:output><soap:body use="literal"/></wsdl:output></wsdl:operation>')
    return (f'<?xml version="1.0" encoding="UTF-8"?>'
            f'<wsdl:definitions xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/" '
            f'xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/" xmlns:xsd="{XSD}" xmlns:tns="{ns}" '
            f'targetNamespace="{ns}" name="{key}">'
            f'<wsdl:documentation>{escape(service["name"])}</wsdl:documentation>'
            f'<wsdl:types><xsd:schema targetNamespace="{ns}" elementFormDefault="qualified">{"".join(types)}'
            f'</xsd:schema></wsdl:types>{"".join(messages)}'
            f'<wsdl:portType name="{key}PortType">{"".join(port_ops)}</wsdl:portType>'
            f'<wsdl:binding name="{key}Binding" type="tns:{key}PortType">'
            f'<soap:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>'
            f'{"".join(binding_ops)}</wsdl:binding>'
            f'<wsdl:service name="{key}"><wsdl:port name="{key}Port" binding="tns:{key}Binding">'
            f'<soap:address location="{_attr(address)}"/></wsdl:port></wsdl:service></wsdl:definitions>')


def _coerce(text: str, schema: dict) -> Any:
    kind = schema.get("type")
    try:
        if kind == "integer":
            return int(text)
        if kind == "number":
            return float(text)
        if kind == "boolean":
            # xsd:boolean is true/false/1/0; anything else stays text so the schema check names the field
            return {"true": True, "1": True, "false": False, "0": False}.get(text.strip().lower(), text)
    except ValueError:
        return text  # the schema check that follows names the field
    return text


def _value(element, schema: dict) -> Any:
    children = list(element)
    if not children:
        return _coerce(element.text or "", schema)
    out: dict[str, Any] = {}
    props = schema.get("properties") or {}
    for child in children:
        name = etree.QName(child).localname
        sub = props.get(name) or {}
        if sub.get("type") == "array":
            out.setdefault(name, []).append(_value(child, sub.get("items") or {}))
        else:
            out[name] = _value(child, sub)
    return out


def parse(body: bytes, operations: dict) -> tuple[str, dict]:
    """(operation, arguments) from a SOAP 1.1 request envelope."""
    if len(body) > MAX_BYTES:
        raise SoapError("the request is too large")
    try:
        root = etree.fromstring(body, PARSER)
    except etree.XMLSyntaxError as exc:
        raise SoapError(f"the request is not well-formed XML: {exc}") from None
    if root.getroottree().docinfo.internalDTD is not None:
        raise SoapError("DTDs are not accepted")
    envelope_body = root.find(f"{{{SOAP_ENV}}}Body")
    if etree.QName(root).text != f"{{{SOAP_ENV}}}Envelope" or envelope_body is None or len(envelope_body) == 0:
        raise SoapError("not a SOAP 1.1 envelope with a body")
    request = envelope_body[0]
    operation = etree.QName(request).localname
    if operation not in operations:
        raise SoapError(f"unknown operation '{operation}'")
    arguments = _value(request, operations[operation]["params"])
    return operation, arguments if isinstance(arguments, dict) else {}


def _xml(name: str, value: Any) -> str:
    if isinstance(value, dict):
        return f"<{name}>{''.join(_xml(k, v) for k, v in value.items() if _is_name(k))}</{name}>"
    if isinstance(value, list):
        return "".join(_xml(name, v) for v in value)
    if value is None:
        return f'<{name} xsi:nil="true"/>'
    if isinstance(value, bool):
        value = "true" if value else "false"
    return f"<{name}>{escape(str(value))}</{name}>"


def _is_name(key: str) -> bool:
    return isinstance(key, str) and bool(NAME.match(key))


def response(service: str, operation: str, result: Any) -> str:
    """A response envelope carrying the result (object members become child elements)."""
    content = result if isinstance(result, dict) else {"result": result}
    inner = "".join(_xml(k, v) for k, v in content.items() if _is_name(k))
    return (f'<?xml version="1.0" encoding="UTF-8"?><soap:Envelope xmlns:soap="{SOAP_ENV}" '
            f'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soap:Body>'
            f'<tns:{operation}Response xmlns:tns="{namespace(service)}" xmlns="{namespace(service)}">{inner}'
            f"</tns:{operation}Response></soap:Body></soap:Envelope>")


def fault(code: str, message: str) -> str:
    """A SOAP fault: ``code`` is Client (the caller's mistake) or Server."""
    return (f'<?xml version="1.0" encoding="UTF-8"?><soap:Envelope xmlns:soap="{SOAP_ENV}"><soap:Body>'
            f"<soap:Fault><faultcode>soap:{code}</faultcode><faultstring>{escape(message)}</faultstring>"
            f"</soap:Fault></soap:Body></soap:Envelope>")
