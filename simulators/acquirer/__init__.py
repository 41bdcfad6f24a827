"""A card acquirer simulator: the HTTP API a real acquirer has, with test cards that trigger each outcome."""
