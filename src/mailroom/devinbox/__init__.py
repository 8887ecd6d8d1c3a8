"""The development inbox: an SMTP server that keeps what it receives, browsable over HTTP."""
