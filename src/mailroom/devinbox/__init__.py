"""The development inbox: an SMTP server that keeps what it receives (`mailroom dev`).

The API shows it at GET /dev/inbox (``api/routes/dev_inbox``); nothing here imports the API.
"""
