"""The kinds of Cfg handler and what they share (spec/repository.md §5).

Every file in a ``Cfg/<path>/`` directory is held by one handler object, chosen by
file name (``CfgHandler.match``): a *generator* makes the content, an *info* handler
supplies attributes, a *verifier* checks the final content, a *creator* would make
content that does not exist yet (key creators; refused here).
"""
import base64
import logging

from bcfg2_cherry import encryption
from bcfg2_cherry.plugin.exceptions import PluginExecutionError, SpecificityError
from bcfg2_cherry.plugin.helpers import (
    DefaultTemplateDataProvider,
    FileBacked,
    Specificity,
    parse_specificity,
)

logger = logging.getLogger(__name__)

#: The specificity of files that apply to every client.
ALL = Specificity(all=True)


class CfgHandler:
    """What every Cfg handler class declares about the files it takes.

    Subclasses are instantiated as ``cls(path, specific, cfg)``; ``cfg`` is the Cfg
    plugin (settings, shared template environments, the core).
    """

    #: fixed file names this handler takes (empty: the directory's own name)
    __basenames__ = ()
    #: extensions (with the dot) that must end the file name
    __extensions__ = ()
    #: extensions of files nobody handles and nobody complains about
    __ignore__ = ()
    #: whether ``.G<prio>_<group>`` / ``.H_<host>`` may follow the base name
    __specific__ = True
    #: lower is tried first (spec §5.2)
    __priority__ = 0
    #: what the handler is, for messages
    kind = "file"

    @classmethod
    def match(cls, filename, basename):
        """The file's Specificity when this handler takes ``filename``, else None."""
        for base in cls.__basenames__ or (basename,):
            if not filename.startswith(base):
                continue
            if not cls.__specific__:
                if filename == base:
                    return ALL
                continue
            for ext in cls.__extensions__ or ("",):
                if ext and not filename.endswith(ext):
                    continue
                if len(filename) < len(base) + len(ext):
                    continue
                try:
                    specific, found = parse_specificity(filename, base,
                                                        (ext,) if ext else ())
                except SpecificityError:
                    continue
                if found == ext:
                    return specific
        return None

    def to_base64(self, data):
        """``data`` (content this handler made) base64-encoded, as text."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        return base64.b64encode(data).decode("ascii")

    @classmethod
    def ignores(cls, filename):
        """Whether ``filename`` is an include fragment this handler's engine reads."""
        return any(filename.endswith(ext) for ext in cls.__ignore__)

    def __str__(self):
        return "%s(%s)" % (self.__class__.__name__, self.name)

    __repr__ = __str__


def describe_error(err, filename=None):
    """``ErrClass: message`` plus where in ``filename`` (a template) it happened."""
    where = ""
    if filename:
        lineno = None
        code = None
        tb = err.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == filename:
                lineno = tb.tb_lineno
                code = tb.tb_frame.f_code.co_name
            tb = tb.tb_next
        if lineno is None:
            lineno = getattr(err, "lineno", None)
        if code and code.startswith("<") and code != "<module>":
            where = " in %s" % code  # Genshi names the expression or python block
        elif lineno:
            where = " at line %s" % lineno
    return "%s: %s%s" % (err.__class__.__name__, err, where)


def translate_newlines(text):
    """Universal newlines, as Python's text-mode ``open`` (upstream) reads files."""
    if "\r" in text:
        return text.replace("\r\n", "\n").replace("\r", "\n")
    return text


class CfgGenerator(CfgHandler, FileBacked):
    """A file that makes the content of the entry: plain text or a template."""

    kind = "generator"

    def __init__(self, name, specific, cfg):
        FileBacked.__init__(self, name)
        self.specific = specific
        self.cfg = cfg

    def get_data(self, entry, metadata, binary=False):
        """The content for this client: text (str), or bytes.

        ``binary`` is set when the entry is sent base64-encoded: bytes are then
        welcome as they are.
        """
        raise NotImplementedError


class StaticGenerator(CfgGenerator):
    """A generator whose content is the same for every client (plain or decrypted).

    ``raw`` is the content; ``text`` its decoded form (UTF-8, universal newlines, as
    upstream reads plain files), or None when it is not text.
    """

    def __init__(self, name, specific, cfg):
        CfgGenerator.__init__(self, name, specific, cfg)
        #: (raw bytes, text or None, why it is not text / not available)
        self.content = (b"", "", None)
        self._b64 = None

    def content_bytes(self):
        """The content's bytes from the file's ``data`` (hook: decryption)."""
        return self.data

    def Index(self):
        try:
            raw = self.content_bytes()
        except PluginExecutionError as err:
            self.content = (None, None, str(err))
            self._b64 = None
            return
        try:
            text = translate_newlines(raw.decode("utf-8"))
            error = None
        except UnicodeDecodeError as err:
            text = None
            error = "not UTF-8 text (%s)" % err
        self.content = (raw, text, error)
        self._b64 = None

    def get_data(self, entry, metadata, binary=False):
        raw, text, error = self.content
        if raw is None:
            raise PluginExecutionError(error)
        if binary or text is None:
            return raw
        return text

    def to_base64(self, data):
        if data is self.content[0]:
            cached = self._b64
            if cached is None or cached[0] is not data:
                cached = self._b64 = (data, CfgHandler.to_base64(self, data))
            return cached[1]
        return CfgHandler.to_base64(self, data)


class EncryptedContent:
    """Mix-in: the file is ``openssl enc`` output, decrypted at load (spec §5.7).

    Every passphrase of ``[encryption]`` is tried. A file that cannot be decrypted
    is logged (a debug message with lax decryption) and fails every bind of its
    entry, in both modes (upstream served the still-encrypted text; not copied).
    """

    def decrypt(self, data):
        """Decrypted bytes of ``data``; raises PluginExecutionError."""
        setup = self.cfg.setup
        try:
            return encryption.bruteforce_decrypt(
                data, encryption.get_passphrases(setup),
                algorithm=encryption.get_algorithm(setup))
        except encryption.EVPError as err:
            message = "Cfg: failed to decrypt %s: %s" % (self.name, err)
            if encryption.get_lax_decryption(setup):
                logger.debug(message)
            else:
                logger.error(message)
            raise PluginExecutionError(message) from None


class TemplateDataDefaults(DefaultTemplateDataProvider):
    """The default template variables plus ``path``, which differs per engine."""

    def __init__(self, core, path_is_template):
        DefaultTemplateDataProvider.__init__(self, core)
        self.path_is_template = path_is_template
        self.repo = core.setup.repository

    def get_template_data(self, entry, metadata, template):
        name = entry.get("realname", entry.get("name"))
        return {"name": name, "metadata": metadata, "source_path": template,
                "repo": self.repo, "path": template if self.path_is_template else name}


class TemplateGenerator(CfgGenerator):
    """A generator that renders a template per client.

    Subclasses say how to ``compile`` the source bytes and ``render`` with the
    variables. A template that does not compile is logged (file and line) and
    fails its entry until it is fixed; one that raises while rendering fails only
    that entry for that client, naming the template.
    """

    #: the engine's name, for messages
    engine = "template"
    #: ``path`` is the template file (Genshi) rather than the entry name
    path_is_template = False

    def __init__(self, name, specific, cfg):
        CfgGenerator.__init__(self, name, specific, cfg)
        self.template = None
        self.error = "not read yet"

    def source_bytes(self):
        """The template's source bytes (hook: decryption)."""
        return self.data

    def compile(self, source):
        raise NotImplementedError

    def render(self, template, variables):
        raise NotImplementedError

    def Index(self):
        try:
            template = self.compile(self.source_bytes())
        except PluginExecutionError as err:
            self.template, self.error = None, str(err)
            return
        except Exception as err:  # noqa: BLE001  # pylint: disable=broad-except
            error = describe_error(err, self.name)
            logger.error("Cfg: cannot load %s template %s: %s", self.engine, self.name,
                         error)
            self.template, self.error = None, error
            return
        self.template, self.error = template, None

    def get_data(self, entry, metadata, binary=False):
        template = self.template
        if template is None:
            raise PluginExecutionError("Cfg: %s template %s could not be loaded: %s"
                                       % (self.engine, self.name, self.error))
        variables = self.cfg.template_data(entry, metadata, self.name,
                                           self.path_is_template)
        try:
            return self.render(template, variables)
        except Exception as err:  # noqa: BLE001  # pylint: disable=broad-except
            raise PluginExecutionError("Cfg: error rendering %s from %s: %s" % (
                entry.get("name"), self.name, describe_error(err, self.name))) from None

    def source_text(self, source):
        """The source decoded with ``[components] encoding``."""
        return source.decode(self.cfg.encoding)


class CfgInfo(CfgHandler):
    """A file that supplies the entry's attributes (owner, group, mode, ...)."""

    kind = "info"
    __specific__ = False

    def bind_info_to_entry(self, entry, metadata):
        raise NotImplementedError


class CfgVerifier(CfgHandler, FileBacked):
    """A file that checks the final content of the entry."""

    kind = "verifier"

    def __init__(self, name, specific, cfg):
        FileBacked.__init__(self, name)
        self.specific = specific
        self.cfg = cfg

    def verify_entry(self, entry, metadata, data):
        """Raise PluginExecutionError when ``data`` is not acceptable."""
        raise NotImplementedError


class CfgCreator(CfgHandler, FileBacked):
    """A file that describes how to create content that does not exist yet."""

    kind = "creator"
    __specific__ = False

    def __init__(self, name, specific, cfg):
        FileBacked.__init__(self, name)
        self.specific = specific
        self.cfg = cfg

    def create_data(self, entry, metadata):
        raise NotImplementedError

