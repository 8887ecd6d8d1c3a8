"""The email domain: what an email is, how it moves through its states, and its log."""
