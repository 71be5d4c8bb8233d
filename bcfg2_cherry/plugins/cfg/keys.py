"""Key creators and authorized_keys (spec/repository.md §5.8): not supported.

Their files are recognised so that the entry fails with a clear reason instead of
"no generator", and so that a key file they created earlier (host- or
group-specific plain files beside them) is still served.
"""
from bcfg2_cherry.plugin.exceptions import PluginExecutionError
from bcfg2_cherry.plugins.cfg.base import CfgCreator, CfgGenerator

UNSUPPORTED = ("Cfg: %s (%s) is not supported by this server; create the file once "
               "with upstream's tools (or by hand) and keep it beside %s as a plain "
               "host- or group-specific file")


class _Unsupported:
    what = "key creation"

    def Index(self):
        pass

    def refuse(self):
        raise PluginExecutionError(UNSUPPORTED % (self.name, self.what,
                                                  self.__basenames__[0]))


class CfgPrivateKeyCreator(_Unsupported, CfgCreator):
    """``privkey.xml``: SSH key pairs made with ssh-keygen."""

    __basenames__ = ("privkey.xml",)
    what = "SSH key creation"

    def create_data(self, entry, metadata):
        self.refuse()


class CfgPublicKeyCreator(_Unsupported, CfgCreator):
    """``pubkey.xml``: the public half of a privkey.xml pair."""

    __basenames__ = ("pubkey.xml",)
    what = "SSH public key creation"

    def create_data(self, entry, metadata):
        self.refuse()


class CfgSSLCAKeyCreator(_Unsupported, CfgCreator):
    """``sslkey.xml``: SSL private keys."""

    __basenames__ = ("sslkey.xml",)
    what = "SSL key creation"

    def create_data(self, entry, metadata):
        self.refuse()


class CfgSSLCACertCreator(_Unsupported, CfgCreator):
    """``sslcert.xml``: certificates signed by a CA of ``[sslca_<name>]``."""

    __basenames__ = ("sslcert.xml",)
    what = "SSL certificate creation"

    def create_data(self, entry, metadata):
        self.refuse()


class CfgAuthorizedKeysGenerator(_Unsupported, CfgGenerator):
    """``authorizedkeys.xml``: authorized_keys built from public keys."""

    __basenames__ = ("authorizedkeys.xml", "authorized_keys.xml")
    __specific__ = False
    what = "authorized_keys generation"

    def get_data(self, entry, metadata, binary=False):
        self.refuse()
