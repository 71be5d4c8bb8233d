"""Key creators and authorized_keys (spec/repository.md §5.8).

- ``privkey.xml``: makes an SSH key pair with ``ssh-keygen`` the first time a client
  needs it, stores the private key beside the XML as a host- or group-specific file
  (encrypted when ``[sshkeys]``/``[cfg] passphrase`` names a passphrase) and the
  public key in ``Cfg/<path>.pub/``.
- ``pubkey.xml``: serves that public key (making the pair when needed).
- ``authorizedkeys.xml``: an ``authorized_keys`` file from public keys in the
  repository and literal keys.
- ``sslkey.xml``/``sslcert.xml`` (SSL keys, CA-signed certificates): not supported;
  the entry fails with that reason.
"""
import logging
import os
import shlex
import subprocess
import tempfile
import threading

import lxml.etree

from bcfg2_cherry import encryption
from bcfg2_cherry.plugin.exceptions import PluginExecutionError
from bcfg2_cherry.plugin.helpers import StructFile
from bcfg2_cherry.plugins.cfg.base import ALL, CfgCreator, CfgGenerator

logger = logging.getLogger(__name__)

#: seconds ssh-keygen may take
KEYGEN_TIMEOUT = 120


class CfgCreationError(PluginExecutionError):
    """Data could not be created."""


class XMLCfgCreator(CfgCreator, StructFile):
    """A creator described by an XML file with Group/Client conditionals.

    Created data is specific to the host, or to the client's group in the
    category of ``[<section>] category`` (else ``[cfg] category``; the root's
    ``category`` attribute wins) unless the root says ``perhost="true"``.
    """

    #: bcfg2.conf section whose category/passphrase override [cfg]'s
    section = None
    #: whether created data is encrypted when a passphrase is configured
    encryptable = True

    def __init__(self, name, specific, cfg):
        StructFile.__init__(self, name, fam=cfg.core.fam, core=cfg.core)
        self.specific = ALL
        self.cfg = cfg
        self.lock = threading.Lock()

    def _option(self, name):
        setup = self.cfg.setup
        value = setup.get(self.section, name) if self.section else None
        return value if value is not None else setup.get("cfg", name)

    def passphrase(self):
        """The secret that encrypts created data, or None."""
        name = self._option("passphrase")
        if not name:
            return None
        passphrases = encryption.get_passphrases(self.cfg.setup)
        if name not in passphrases:
            raise CfgCreationError("Cfg: %s: no passphrase %s in [encryption]"
                                   % (self.name, name))
        return passphrases[name]

    def spec(self, metadata):
        """The XML for this client (conditionals resolved)."""
        if not self.loaded:
            raise CfgCreationError("Cfg: %s could not be loaded" % self.name)
        return self.XMLMatch(metadata)

    def get_specificity(self, metadata):
        """``dict(host=...)`` or ``dict(group=..., prio=...)`` for created data."""
        root = self.xdata
        category = root.get("category", self._option("category"))
        per_host = root.get("perhost", "true" if category is None else "false")
        if category and per_host.lower() != "true":
            group = metadata.group_in_category(category)
            if group:
                return {"group": group, "prio": int(root.get("priority", 50))}
            logger.info("Cfg: %s has no group in category %s; creating host-specific "
                        "data", metadata.hostname, category)
        return {"host": metadata.hostname}

    def get_filename(self, host=None, group=None, prio=0, ext=""):
        """Where created data for that specificity lives (beside this file)."""
        directory = os.path.dirname(self.name)
        base = os.path.join(directory, os.path.basename(directory))
        if group:
            return "%s.G%02d_%s%s" % (base, prio, group, ext)
        if host:
            return "%s.H_%s%s" % (base, host, ext)
        return base + ext

    def existing(self, **specificity):
        """Data created earlier for that specificity (the monitor may not have
        seen the file yet), or None."""
        for ext in ("", ".crypt"):
            path = self.get_filename(ext=ext, **specificity)
            if os.path.exists(path):
                with open(path, "rb") as fh:
                    data = fh.read()
                if ext:
                    data = encryption.bruteforce_decrypt(
                        data, encryption.get_passphrases(self.cfg.setup),
                        algorithm=encryption.get_algorithm(self.cfg.setup))
                return data.decode("utf-8")
        return None

    def write_data(self, data, mode=0o600, **specificity):
        """Store created data (encrypted when configured) for that specificity."""
        ext = ""
        passphrase = self.passphrase() if self.encryptable else None
        if passphrase:
            data = encryption.ssl_encrypt(data, passphrase,
                                          encryption.get_algorithm(self.cfg.setup))
            ext = ".crypt"
        path = self.get_filename(ext=ext, **specificity)
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data.encode("utf-8") if isinstance(data, str) else data)
        except OSError as err:
            raise CfgCreationError("Cfg: cannot write %s: %s" % (path, err)) from None
        logger.info("Cfg: created %s", path)


def _run(cmd, what, data=None):
    try:
        result = subprocess.run(cmd, input=data, capture_output=True,
                                timeout=KEYGEN_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise CfgCreationError("Cfg: %s failed: %s" % (what, err)) from None
    if result.returncode != 0:
        raise CfgCreationError("Cfg: %s failed: %s" % (
            what, result.stderr.decode("utf-8", "replace").strip()))
    return result


class CfgPrivateKeyCreator(XMLCfgCreator):
    """``privkey.xml``: ``<PrivateKey><Params type= bits=/><Passphrase/></PrivateKey>``."""

    __basenames__ = ("privkey.xml",)
    section = "sshkeys"

    def pubkey_path(self):
        """The public key's Cfg directory: ``Cfg/<path>.pub``."""
        return os.path.dirname(self.name) + ".pub"

    def pubkey_filename(self, host=None, group=None, prio=0):
        directory = self.pubkey_path()
        base = os.path.join(directory, os.path.basename(directory))
        if group:
            return "%s.G%02d_%s" % (base, prio, group)
        if host:
            return "%s.H_%s" % (base, host)
        return base

    def keygen(self, metadata, spec):
        """(private key, public key) made by ssh-keygen as ``spec`` says."""
        ktype, bits = "rsa", None
        params = spec.find("Params")
        if params is not None:
            ktype = params.get("type", ktype)
            bits = params.get("bits")
        passphrase = spec.findtext("Passphrase") or ""
        tempdir = tempfile.mkdtemp(prefix="bcfg2-keygen-")
        try:
            filename = os.path.join(tempdir, "privkey")
            cmd = ["ssh-keygen", "-q", "-f", filename, "-t", ktype]
            if bits:
                cmd.extend(["-b", bits])
            cmd.extend(["-N", passphrase])
            logger.debug("Cfg: making an SSH key pair for %s: %s", metadata.hostname,
                         " ".join(shlex.quote(c) for c in cmd[:-1] + ["***"]))
            _run(cmd, "ssh-keygen for %s (%s)" % (metadata.hostname, self.name))
            with open(filename) as fh:
                private = fh.read()
            with open(filename + ".pub") as fh:
                public = fh.read()
            return private, public
        finally:
            for name in os.listdir(tempdir):
                os.unlink(os.path.join(tempdir, name))
            os.rmdir(tempdir)

    def create_data(self, entry, metadata):
        spec = self.spec(metadata)
        specificity = self.get_specificity(metadata)
        with self.lock:
            data = self.existing(**specificity)
            if data is not None:
                return data
            private, public = self.keygen(metadata, spec)
            # as upstream: the public key's comment is where it is stored
            fields = public.split()[:2] + [self.pubkey_filename(**specificity)]
            pubfile = self.pubkey_filename(**specificity)
            try:
                os.makedirs(os.path.dirname(pubfile), exist_ok=True)
                with open(pubfile, "w") as fh:
                    fh.write(" ".join(fields) + "\n")
            except OSError as err:
                raise CfgCreationError("Cfg: cannot write %s: %s" % (pubfile, err)) \
                    from None
            self.write_data(private, **specificity)
            return private


class CfgPublicKeyCreator(XMLCfgCreator):
    """``pubkey.xml`` in ``Cfg/<path>.pub/``: the public half of ``<path>``'s pair."""

    __basenames__ = ("pubkey.xml",)
    encryption = False
    encryptable = False

    def create_data(self, entry, metadata):
        name = entry.get("name")
        if not name.endswith(".pub"):
            raise CfgCreationError("Cfg: cannot tell the private key of %s: the name "
                                   "does not end in .pub" % name)
        privkey = name[:-4]
        key_entry = lxml.etree.Element("Path", name=privkey)
        try:
            self.cfg.core.Bind(key_entry, metadata)
        except PluginExecutionError as err:
            raise CfgCreationError("Cfg: cannot bind %s (the private key of %s): %s"
                                   % (privkey, name, err)) from None
        entryset = self.cfg.entrysets.get(privkey)
        creators = [c for c in getattr(entryset, "creators", ())
                    if isinstance(c, CfgPrivateKeyCreator)]
        if not creators:
            raise CfgCreationError("Cfg: no privkey.xml for %s (the private key of %s)"
                                   % (privkey, name))
        specificity = creators[0].get_specificity(metadata)
        with self.lock:
            data = self.existing(**specificity)
            if data is not None:
                return data
            fd, path = tempfile.mkstemp(prefix="bcfg2-privkey-")
            try:
                with os.fdopen(fd, "w") as fh:
                    fh.write(key_entry.text or "")
                result = _run(["ssh-keygen", "-y", "-f", path],
                              "extracting the public key of %s" % privkey)
            finally:
                os.unlink(path)
            public = result.stdout.decode("utf-8")
            self.write_data(public, mode=0o644, **specificity)
            return public


class CfgAuthorizedKeysGenerator(CfgGenerator, StructFile):
    """``authorizedkeys.xml``: ``<Allow from="/path/key.pub" [host=|group=|category=]>``
    (a key from the repository, bound for that host, group or this client) or
    ``<Allow>literal key</Allow>``, each with optional ``<Option name= value=/>``."""

    __basenames__ = ("authorizedkeys.xml", "authorized_keys.xml")
    __specific__ = False

    def __init__(self, name, specific, cfg):
        StructFile.__init__(self, name, fam=cfg.core.fam, core=cfg.core)
        self.specific = ALL
        self.cfg = cfg

    def _key_metadata(self, allow, metadata):
        """The metadata to bind a ``from`` key with, or None to skip it."""
        host, group = allow.get("host"), allow.get("group")
        if host:
            return self.cfg.core.build_metadata(host)
        if group:
            return _GroupMetadata(group)
        category = allow.get("category", self.cfg.setup.get("sshkeys", "category"))
        if category and not metadata.group_in_category(category):
            logger.warning("Cfg: %s: ignoring Allow from %s in %s: no group in "
                           "category %s", metadata.hostname, allow.get("from"),
                           self.name, category)
            return None
        return metadata

    def get_data(self, entry, metadata, binary=False):
        if not self.loaded:
            raise PluginExecutionError("Cfg: %s could not be loaded" % self.name)
        lines = []
        for allow in self.XMLMatch(metadata).findall("Allow"):
            options = ["%s=%s" % (opt.get("name"), opt.get("value"))
                       if opt.get("value") else opt.get("name")
                       for opt in allow.findall("Option")]
            source = allow.get("from")
            if source:
                key_md = self._key_metadata(allow, metadata)
                if key_md is None:
                    continue
                key_entry = lxml.etree.Element("Path", name=source)
                try:
                    self.cfg.core.Bind(key_entry, key_md)
                except PluginExecutionError as err:
                    logger.info("Cfg: %s: skipping Allow from %s: no key (%s)",
                                metadata.hostname, source, err)
                    continue
                if not key_entry.text:
                    logger.warning("Cfg: %s: skipping Allow from %s: empty public key",
                                   metadata.hostname, source)
                    continue
                key = key_entry.text
            elif allow.text and allow.text.strip():
                key = allow.text.strip()
            else:
                logger.warning("Cfg: %s: ignoring an empty Allow in %s",
                               metadata.hostname, self.name)
                continue
            lines.append(" ".join([",".join(options), key]).strip())
        return "\n".join(lines)


class _GroupMetadata:
    """The metadata of no client in particular, only in ``group`` (``Allow group=``)."""

    def __init__(self, group):
        self.hostname = "dummy"
        self.profile = group
        self.groups = {group}
        self.bundles = set()
        self.aliases = set()
        self.addresses = set()
        self.categories = {}
        self.uuid = self.password = self.version = self.query = None
        self.connectors = []

    def group_in_category(self, category):
        return ""


UNSUPPORTED = ("Cfg: %s (%s) is not supported by this server; create the key or "
               "certificate once (e.g. with openssl) and keep it beside %s as a "
               "host- or group-specific file")


class _Unsupported(CfgCreator):
    what = "?"

    def __init__(self, name, specific, cfg):
        CfgCreator.__init__(self, name, ALL, cfg)

    def Index(self):
        pass

    def create_data(self, entry, metadata):
        raise PluginExecutionError(UNSUPPORTED % (self.name, self.what,
                                                  self.__basenames__[0]))


class CfgSSLCAKeyCreator(_Unsupported):
    """``sslkey.xml``: SSL private keys (not supported)."""

    __basenames__ = ("sslkey.xml",)
    what = "SSL key creation"


class CfgSSLCACertCreator(_Unsupported):
    """``sslcert.xml``: certificates signed by a CA of ``[sslca_<name>]`` (not
    supported)."""

    __basenames__ = ("sslcert.xml",)
    what = "SSL certificate creation"
