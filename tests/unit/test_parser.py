"""Hardened XML parsing of uploaded BPMN/DMN: no DTDs, no entities, no huge inputs, precise errors."""
from __future__ import annotations

import pytest

from engine.bpmn.parser import MAX_XML_BYTES, EmflowParser, parse_xml
from engine.errors import DeployError

SECRET = "emflow-xxe-canary"

XXE = b"""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE definitions [
  <!ENTITY secret SYSTEM "file:///etc/passwd">
]>
<definitions>&secret;</definitions>
"""

BILLION_LAUGHS = b"""<?xml version="1.0"?>

<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<lolz>&lol4;</lolz>
"""


def test_xxe_is_refused_with_file_and_line():
    with pytest.raises(DeployError) as caught:
        parse_xml(XXE, "upload.bpmn")
    err = caught.value
    assert (err.file, err.line) == ("upload.bpmn", 2)
    assert err.message == "upload.bpmn, line 2: DOCTYPE and ENTITY declarations are not allowed"


def test_billion_laughs_is_refused_with_file_and_line():
    with pytest.raises(DeployError, match=r"^laughs\.dmn, line 3: DOCTYPE and ENTITY") as caught:
        parse_xml(BILLION_LAUGHS, "laughs.dmn")
    assert caught.value.code == "invalid_process"


def test_an_entity_declaration_without_doctype_keyword_is_refused():
    with pytest.raises(DeployError, match="line 1: DOCTYPE and ENTITY declarations are not allowed"):
        parse_xml(b'<!ENTITY x "y"><r/>', "x.bpmn")


@pytest.mark.parametrize("doctype", ["<!doctype r>", "<!DocType r>", '<!DOCTYPE r SYSTEM "http://example.com/r.dtd">'])
def test_doctype_is_refused_in_any_spelling(doctype):
    with pytest.raises(DeployError, match="DOCTYPE and ENTITY declarations are not allowed"):
        parse_xml(f'<?xml version="1.0"?>\n{doctype}\n<r/>'.encode(), "x.bpmn")


def test_doctype_in_utf16_is_refused_and_never_resolved(tmp_path):
    """The byte scan cannot see a UTF-16 DOCTYPE; the parsed document is checked as well."""
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET)
    text = (f'<?xml version="1.0" encoding="UTF-16"?>\n<!DOCTYPE r [<!ENTITY s SYSTEM "{secret.as_uri()}">]>\n'
            f"<r>&s;</r>")
    with pytest.raises(DeployError, match=r"^wide\.bpmn: DOCTYPE and ENTITY declarations are not allowed") as caught:
        parse_xml(text.encode("utf-16"), "wide.bpmn")
    assert SECRET not in caught.value.message


def test_invalid_xml_reports_file_and_line():
    data = b'<?xml version="1.0"?>\n<definitions>\n  <process id="p">\n</definitions>\n'
    with pytest.raises(DeployError) as caught:
        parse_xml(data, "broken.bpmn")
    err = caught.value
    assert err.file == "broken.bpmn" and err.line == 4
    assert err.message.startswith("broken.bpmn, line 4: invalid XML: ")
    assert "mismatch" in err.message


def test_empty_input_is_invalid_xml():
    with pytest.raises(DeployError, match=r"^empty\.bpmn.*invalid XML"):
        parse_xml(b"", "empty.bpmn")


def test_oversized_input_is_refused_before_parsing():
    data = b"<r>" + b" " * (MAX_XML_BYTES - 6) + b"</r>"
    assert len(data) == MAX_XML_BYTES + 1
    with pytest.raises(DeployError, match=r"^big\.bpmn: file is larger than 5 MB$"):
        parse_xml(data, "big.bpmn")


def test_input_at_the_size_limit_is_accepted():
    data = b"<r>" + b" " * (MAX_XML_BYTES - 7) + b"</r>"
    assert len(data) == MAX_XML_BYTES
    assert parse_xml(data, "ok.bpmn").tag == "r"


def test_processing_instructions_are_dropped():
    root = parse_xml(b'<?xml version="1.0"?>\n<r><?evil run="me"?><a/></r>', "pi.bpmn")
    assert [child.tag for child in root] == ["a"]


def test_well_formed_xml_is_parsed_with_line_numbers():
    root = parse_xml(b'<?xml version="1.0"?>\n<r>\n  <a id="x"/>\n</r>', "ok.bpmn")
    assert root.find("a").sourceline == 3


def test_the_bpmn_parser_uses_the_hardened_parse():
    with pytest.raises(DeployError, match=r"^p\.bpmn, line 2: DOCTYPE"):
        EmflowParser().add_bpmn_bytes(XXE, "p.bpmn")


def test_the_dmn_parser_uses_the_hardened_parse():
    with pytest.raises(DeployError, match=r"^d\.dmn, line 3: DOCTYPE"):
        EmflowParser().add_dmn_bytes(BILLION_LAUGHS, "d.dmn")
