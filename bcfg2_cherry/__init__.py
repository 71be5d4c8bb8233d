"""bcfg2_cherry: a Python 3 server for the Bcfg2 configuration-management protocol."""

__version__ = "0.1.0"

__all__ = ["__version__"]
