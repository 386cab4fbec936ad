"""What the tests share: the running service (stack), accounts, the operator's
commands, signed Twilio callbacks, the script helpers, the events client and the
Redis high-availability group. Test modules import from here, never from one
another or from conftest, so each one reads and runs on its own."""
