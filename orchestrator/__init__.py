"""Conference orchestrator: adds people to live Twilio conference calls."""

__version__ = "0.1.0"
