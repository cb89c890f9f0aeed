"""Overlay layers: specs (what a file asks for) and kinds (where frames come from)."""
