"""The gateway's own representation of generations, and the codecs that translate dialects to it."""
