"""Encrypted files: ``.crypt`` plain files and encrypted templates
(``.jinja2.crypt``/``.crypt.jinja2``, same for genshi and cheetah), decrypted at load
with the passphrases of ``[encryption]`` (spec/repository.md §5.7)."""
from bcfg2_cherry.plugins.cfg.base import EncryptedContent, StaticGenerator
from bcfg2_cherry.plugins.cfg.cheetah_generator import CfgCheetahGenerator
from bcfg2_cherry.plugins.cfg.genshi_generator import CfgGenshiGenerator
from bcfg2_cherry.plugins.cfg.jinja2_generator import CfgJinja2Generator


class CfgEncryptedGenerator(EncryptedContent, StaticGenerator):
    """``.crypt``: an encrypted plain file."""

    __extensions__ = (".crypt",)
    __priority__ = 50

    def content_bytes(self):
        return self.decrypt(self.data)


class _EncryptedTemplate(EncryptedContent):
    def source_bytes(self):
        return self.decrypt(self.data)


class CfgEncryptedJinja2Generator(_EncryptedTemplate, CfgJinja2Generator):
    """An encrypted Jinja2 template."""

    __extensions__ = (".jinja2.crypt", ".crypt.jinja2")
    __priority__ = 0


class CfgEncryptedGenshiGenerator(_EncryptedTemplate, CfgGenshiGenerator):
    """An encrypted Genshi template."""

    __extensions__ = (".genshi.crypt", ".crypt.genshi")
    __priority__ = 0


class CfgEncryptedCheetahGenerator(_EncryptedTemplate, CfgCheetahGenerator):
    """An encrypted Cheetah template."""

    __extensions__ = (".cheetah.crypt", ".crypt.cheetah")
    __priority__ = 0
