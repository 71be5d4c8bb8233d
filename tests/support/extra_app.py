"""Imported with ``bcfg2-cherry serve --import tests.support.extra_app``: mounts a
small page at /extra on the same CherryPy engine (what cherryd's ``-i`` is for)."""
import cherrypy


class Extra:
    """A page beside the Bcfg2 server."""

    @cherrypy.expose
    def index(self):
        return "extra page, thread_pool=%s" % cherrypy.server.thread_pool


cherrypy.tree.mount(Extra(), "/extra")
