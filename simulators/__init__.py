"""Simulators of the outside systems PayEasy talks to (the card acquirer)."""
