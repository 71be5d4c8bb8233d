"""Helpers shared by the conformance and integration tests: a client that behaves like
the upstream Bcfg2 client (``rawclient``), a launcher for real ``bcfg2-cherry serve``
processes (``servers``) and a Metadata plugin that records what authentication saw
(``recording``)."""
