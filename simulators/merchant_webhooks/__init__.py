"""A merchant's webhook endpoint, simulated: records each delivery, verifies its PayEasy-Signature, and can be
told to fail so the notification resend path is visible."""
