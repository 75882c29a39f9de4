"""Venue feeds: decoders, L2 books and WebSocket clients with reconnect and resync."""
