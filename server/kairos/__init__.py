"""Kairos: real-time, in-browser personalization — micro-moment rules pushed over websockets."""

__version__ = "0.1.0"
