"""The one place XML is parsed.

Two lxml parser configurations:

- the *client* parser, for XML that arrives from the network inside XML-RPC strings
  (probe data, statistics): no entities resolved, no DTD loaded or validated, no network,
  bounded size and depth. A hostile document raises ``XMLError`` with a clear message.
- the *repository* parser, for files in the repository: the same protections, except
  that XInclude is processed by the plugin helpers (never over the network).
"""
import lxml.etree

#: Largest client document accepted, in bytes (statistics of big hosts are a few MB).
MAX_CLIENT_DOCUMENT = 32 * 1024 * 1024
#: Deepest element nesting accepted in a client document.
MAX_DEPTH = 256

XINCLUDE_NS = "http://www.w3.org/2001/XInclude"
GENSHI_NS = "http://genshi.edgewall.org/"


class XMLError(ValueError):
    """A document could not be parsed, or was refused as hostile."""


def _parser(**extra):
    return lxml.etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
        huge_tree=False, remove_comments=False, remove_pis=False, **extra)


_CLIENT_PARSER = _parser(remove_blank_text=False)
_REPO_PARSER = _parser(remove_blank_text=True)


def _check_depth(root, limit=MAX_DEPTH):
    # iterwalk would be cheaper, but documents are small; an explicit stack avoids recursion
    stack = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            raise XMLError("document nested deeper than %d elements" % limit)
        stack.extend((child, depth + 1) for child in node)


def _refuse_doctype(tree):
    docinfo = tree.docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:
        raise XMLError("documents with a DOCTYPE are refused")


def parse_client_xml(data, max_size=MAX_CLIENT_DOCUMENT):
    """Parse a document a client sent; returns the root element.

    Refuses documents over ``max_size`` bytes, with a DOCTYPE (so no entity can be
    declared), nested over ``MAX_DEPTH``, or not well-formed.
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    if len(data) > max_size:
        raise XMLError("document of %d bytes is over the limit of %d" %
                       (len(data), max_size))
    try:
        tree = lxml.etree.ElementTree(lxml.etree.fromstring(data, _CLIENT_PARSER))
    except lxml.etree.XMLSyntaxError as err:
        raise XMLError("malformed XML: %s" % err) from None
    _refuse_doctype(tree)
    root = tree.getroot()
    _check_depth(root)
    return root


def parse_repo_file(path):
    """Parse a repository file (read as bytes, so its encoding declaration counts).

    Returns the ElementTree. XInclude is *not* processed here (see plugin helpers).
    Raises ``XMLError`` naming the file and line.
    """
    try:
        tree = lxml.etree.parse(path, _REPO_PARSER)
    except lxml.etree.XMLSyntaxError as err:
        raise XMLError("%s: %s" % (path, err)) from None
    except OSError as err:
        raise XMLError("%s: %s" % (path, err)) from None
    if tree.docinfo.internalDTD is not None:
        raise XMLError("%s: documents with an internal DTD are refused" % path)
    return tree


def parse_repo_string(data, source="<string>"):
    """Parse repository XML held in memory (e.g. a rendered template)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    try:
        root = lxml.etree.fromstring(data, _REPO_PARSER)
    except lxml.etree.XMLSyntaxError as err:
        raise XMLError("%s: %s" % (source, err)) from None
    return root


def tostring(node, pretty=False):
    """Serialize without XML declaration, as text (non-ASCII kept as characters)."""
    return lxml.etree.tostring(node, encoding="unicode", pretty_print=pretty)


Element = lxml.etree.Element
SubElement = lxml.etree.SubElement
