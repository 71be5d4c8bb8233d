"""Genshi text templates (``.genshi``, NewTextTemplate syntax: ``${expr}``,
``{% if %}``, ``{% python %}``; comments removed) (spec/repository.md §5.6)."""
from genshi.core import COMMENT
from genshi.template import NewTextTemplate, TemplateLoader

from bcfg2_cherry.plugins.cfg.base import TemplateGenerator


def make_loader(encoding):
    """The loader for ``{% include %}`` of every Genshi file of one Cfg plugin."""
    return TemplateLoader([], auto_reload=True, default_encoding=encoding,
                          default_class=NewTextTemplate)


def _drop_comments(stream):
    for kind, data, pos in stream:
        if kind is not COMMENT:
            yield kind, data, pos


class CfgGenshiGenerator(TemplateGenerator):
    """A Genshi text template; ``path`` is the template file."""

    __extensions__ = (".genshi",)
    __ignore__ = (".genshi_include",)
    __priority__ = 50
    engine = "Genshi"
    path_is_template = True

    def compile(self, source):
        return NewTextTemplate(source, filepath=self.name, filename=self.name,
                               loader=self.cfg.genshi_loader, encoding=self.cfg.encoding)

    def render(self, template, variables):
        return template.generate(**variables).filter(_drop_comments).render(
            "text", encoding=None)
