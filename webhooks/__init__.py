"""Twilio's webhooks: incoming calls and the status callbacks of every call leg."""
