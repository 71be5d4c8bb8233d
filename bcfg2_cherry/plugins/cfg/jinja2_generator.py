"""Jinja2 templates (``.jinja2``): loader rooted at ``/``, includes relative to the
including template, trailing newline kept (spec/repository.md §5.6)."""
import os

import jinja2

from bcfg2_cherry.plugins.cfg.base import TemplateGenerator


class RelativeEnvironment(jinja2.Environment):
    """An Environment where ``{% include "x" %}`` is relative to the including file."""

    def join_path(self, template, parent):
        return os.path.join(os.path.dirname(parent), template)


def make_environment(encoding):
    """The Jinja2 environment shared by every Jinja2 file of one Cfg plugin."""
    return RelativeEnvironment(loader=jinja2.FileSystemLoader("/", encoding=encoding),
                               keep_trailing_newline=True, auto_reload=True)


class CfgJinja2Generator(TemplateGenerator):
    """A Jinja2 template; ``path`` is the entry name."""

    __extensions__ = (".jinja2",)
    __ignore__ = (".jinja2_include",)
    __priority__ = 50
    engine = "Jinja2"

    def compile(self, source):
        env = self.cfg.jinja2_environment
        code = env.compile(self.source_text(source), self.name, self.name)
        return env.template_class.from_code(env, code, env.make_globals(None), None)

    def render(self, template, variables):
        return template.render(variables)
