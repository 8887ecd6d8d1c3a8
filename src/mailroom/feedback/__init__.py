"""Delivery feedback in: providers' event webhooks and bounce/complaint reports by mail.

Each source is turned into ``FeedbackEvent``s (mailroom.emails.feedback), which that use
case keeps and applies to the emails they name.

providers   Postmark, Brevo and Mailgun webhook payloads → events
ses         Amazon SES notifications over SNS: signature, subscription confirmation
authn       who may post: shared tokens (Postmark, Brevo), Mailgun's HMAC signature
dsn         DSN (RFC 3464) and ARF (RFC 5965) reports → events
listener    the SMTP/LMTP listener of `mailroom bounces`
intake      group commit: concurrent webhook requests' events in one transaction
service     the use cases the route and the listener call
schemas     what the feedback routes return
"""
