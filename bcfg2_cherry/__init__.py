"""bcfg2_cherry: a Python 3 server for the Bcfg2 configuration-management protocol."""

__version__ = "0.1.0"

__all__ = ["__version__", "mount", "wsgi_app"]


def mount(config=None, script_name="/bcfg2", **overrides):
    """Serve Bcfg2 clients from an existing CherryPy application at ``script_name``.

    ``config`` is a bcfg2.conf path, ``overrides`` Settings attributes (e.g.
    ``repository=...``). Returns the mounted cherrypy.Application (its ``root`` is the
    core), which starts and stops with ``cherrypy.engine``. See
    ``bcfg2_cherry.server.cherrypy_core.mount``.
    """
    from bcfg2_cherry.server.cherrypy_core import mount as _mount
    return _mount(config, script_name, **overrides)


def wsgi_app(config=None, script_name="", **overrides):
    """A WSGI callable serving Bcfg2 clients, for WSGI servers other than cheroot.

    See ``bcfg2_cherry.server.cherrypy_core.wsgi_app``.
    """
    from bcfg2_cherry.server.cherrypy_core import wsgi_app as _wsgi_app
    return _wsgi_app(config, script_name, **overrides)
