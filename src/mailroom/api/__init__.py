"""The HTTP API: thin routes over the email service."""
