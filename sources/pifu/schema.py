"""The PIFU-IMS 1.2 schema and the refusal of anything that is not a plain, valid export.

Owns the packaged copy of ``pifu-ims_sas-1.2.xsd`` (byte for byte the one in the PIFU
specification; tests/test_pifu_files.py compares it), the compiled lxml ``XMLSchema`` the
reader validates with while it streams, the prolog check that refuses a DOCTYPE before
the parser sees one, and ``explain``, which finds the line and reason of a file the
streaming pass refused.

Why lxml validates and not xmlschema (the issue names xmlschema): measured with
benchmarks/bench_pifu.py on the demo export (4.1 MB), xmlschema's lazy validation ran at
0.3-0.5 MB/s, 0.02-0.05x a bare ``iterparse`` over the same file (9-12 MB/s), so the Oslo
export (299 MB) would take 10-15 minutes against the target of 0.8x iterparse. libxml2's
validator runs in C inside the reader's own ``iterparse`` pass (``schema=``): the whole
reader (validation, mapping, digests) ran at 0.95x bare iterparse on the demo export and
0.98x at Oslo size (36.1 s against 35.3 s). xmlschema stays for what it does well: it
loads and checks the packaged XSD itself (``check_schema``, a test).

One libxml2 quirk shapes ``explain``: with a schema attached, a well-formedness error
(truncated file, bad token) ends the event stream silently or with "no element found"
and no line. The reader therefore insists on seeing ``</enterprise>``, and on any failure
``explain`` parses again without the schema (exact line and reason for malformed XML),
then, if the file is well-formed, with the schema, fed one line at a time (the line the
schema error is on: lxml reports schema errors without one). Both passes run only on a
refused file.
"""

from __future__ import annotations

import codecs
import re
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from lxml import etree

from provisioner.core.nin import mask_text
from sources.base import SourceError
from sources.pifu.vocabulary import NS

XSD_NAME = "pifu-ims_sas-1.2.xsd"
_HEAD_BYTES = 64 * 1024  # the prolog must end (the root element start) within this much


def xsd_path() -> Path:
    """The packaged XSD."""
    return Path(str(resources.files("sources.pifu").joinpath(XSD_NAME)))


def safe_parser_options() -> dict[str, Any]:
    """lxml options that never load a DTD, expand an entity or touch the network."""
    return {"resolve_entities": False, "no_network": True, "load_dtd": False, "huge_tree": False}


@cache
def pifu_schema() -> etree.XMLSchema:
    """The compiled schema (the XSD's import of the xml namespace needs no file)."""
    parser = etree.XMLParser(**safe_parser_options())
    return etree.XMLSchema(etree.parse(str(xsd_path()), parser))


def check_schema() -> None:
    """Load the packaged XSD with xmlschema too: it must be a valid XSD 1.0 schema."""
    import xmlschema

    xmlschema.XMLSchema10(str(xsd_path()))


_DOCTYPE = re.compile(rb"<!DOCTYPE", re.IGNORECASE)
_ELEMENT_START = re.compile(rb"<[^?!]")


def refuse_doctype(path: Path) -> None:
    """SourceError when the file declares a DOCTYPE (the only place entities come from).

    PIFU exports have none; a DTD in an export is an XXE or entity-expansion attempt or a
    wrong file. Checked on the raw prolog before parsing; the reader checks the parsed
    ``docinfo`` again at its first event.
    """
    with path.open("rb") as f:
        head = f.read(_HEAD_BYTES)
    text = _as_utf8(head)
    start = _ELEMENT_START.search(text)
    prolog = text if start is None else text[: start.start()]
    if _DOCTYPE.search(prolog):
        raise SourceError(f"{path}: refused: the file declares a DOCTYPE (entities and DTDs are not read)")


def _as_utf8(head: bytes) -> bytes:
    """The head of the file as UTF-8 bytes when it starts with a UTF-16 or UTF-32 byte-order mark."""
    for bom, enc in (
        (codecs.BOM_UTF32_LE, "utf-32-le"),
        (codecs.BOM_UTF32_BE, "utf-32-be"),
        (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"),
    ):
        if head.startswith(bom):
            return head[len(bom) :].decode(enc, "ignore").encode()
    return head


# After the root's end tag XML allows only whitespace, comments and processing instructions.
_END_MISC = re.compile(rb"(?:\s+|<!--(?:(?!--).)*-->|<\?(?:(?!\?>).)*\?>)*\Z", re.DOTALL)
_ROOT_END = re.compile(rb"</(?:[A-Za-z_][\w.-]*:)?enterprise\s*>")


def ends_with_root(tail: bytes) -> bool:
    """Whether the last bytes of a UTF-8 file are ``</enterprise>`` and then only misc."""
    return any(_END_MISC.match(tail, m.end()) for m in _ROOT_END.finditer(tail))


def syntax_error(path: Path) -> bool:
    """Whether a bare parse (no schema, which hides a premature end) finds the file malformed."""
    try:
        for _, el in etree.iterparse(str(path), events=("end",), **safe_parser_options()):
            el.clear(keep_tail=False)
    except etree.XMLSyntaxError:
        return True
    return False


_LXML_TAIL = re.compile(r"\s*\((?:<string>|[^()]*), line \d+\)$")


def clean_message(message: str) -> str:
    """An lxml message without its "(file, line 0)" tail and namespace braces, NIN-like digits masked."""
    text = _LXML_TAIL.sub("", str(message)).replace("{" + NS + "}", "")
    return mask_text(text)


def explain(path: Path, failure: str | None) -> str:
    """Line and reason for a file the streaming pass refused (``failure``: its message, if any)."""
    opts = safe_parser_options()
    try:
        for _ in etree.iterparse(str(path), events=("end",), **opts):
            pass
    except etree.XMLSyntaxError as exc:
        return f"line {exc.lineno}: not well-formed XML: {clean_message(exc.msg)}"
    try:
        line = _schema_error_line(path)
    except etree.XMLSyntaxError as exc:
        return f"line {exc.lineno}: not a valid PIFU-IMS 1.2 document: {clean_message(exc.msg)}"
    if failure:
        return f"line {line}: {clean_message(failure)}"
    return f"line {line}: the document ends before </enterprise>"


_RECORDS = tuple(f"{{{NS}}}{t}" for t in ("person", "group", "membership"))


def _schema_error_line(path: Path) -> int:
    """Validate feeding the parser line by line: a schema error is raised with the line it is on.

    (lxml reports schema errors without a line; feeding one line at a time pins it.)
    Returns the number of lines when the whole file is valid.
    """
    parser = etree.XMLPullParser(events=("end",), tag=_RECORDS, schema=pifu_schema(), **safe_parser_options())
    line = 0
    with path.open("rb") as f:
        for line, text in enumerate(f, 1):
            try:
                for i in range(0, len(text), 1 << 16):
                    parser.feed(text[i : i + (1 << 16)])
                for _, el in parser.read_events():
                    el.clear(keep_tail=False)
                errors = [e for e in parser.feed_error_log if e.level_name in ("ERROR", "FATAL")]
                if errors:
                    raise etree.XMLSyntaxError(errors[0].message, None, line, 0)
            except etree.XMLSyntaxError as exc:
                exc.lineno = line
                raise
    try:
        parser.close()
    except etree.XMLSyntaxError as exc:
        exc.lineno = line
        raise
    return line
