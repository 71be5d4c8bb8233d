"""Cheetah templates (``.cheetah``): the variables are attributes of ``self``
(``$self.metadata``, or ``$metadata`` through the search list) (spec §5.6).

The source is text (decoded once, universal newlines as upstream reads it); it is
compiled once per change, not per client.
"""
from bcfg2_cherry.plugins.cfg.base import TemplateGenerator, translate_newlines

SETTINGS = {"useStackFrames": False}


class CfgCheetahGenerator(TemplateGenerator):
    """A Cheetah template; ``path`` is the entry name."""

    __extensions__ = (".cheetah",)
    __priority__ = 50
    engine = "Cheetah"

    def compile(self, source):
        from Cheetah.Template import Template  # slow to import; only when used
        return Template.compile(source=translate_newlines(self.source_text(source)),
                                compilerSettings=SETTINGS)

    def render(self, template, variables):
        instance = template()
        for key, value in variables.items():
            setattr(instance, key, value)
        return instance.respond()
