"""facegate device side: frames in, verified identities out."""

__version__ = "0.1.0"
