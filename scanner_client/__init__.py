"""The entrance scanner client: talks to the API over HTTP only."""

__version__ = "0.1.0"
