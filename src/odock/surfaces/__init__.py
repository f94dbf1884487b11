"""Inbound API surfaces: one module per client dialect, decoding its requests for the pipeline.

A surface turns the body a client sent in its API's format (OpenAI chat completions and
embeddings today; Anthropic messages and Gemini later) into the request the pipeline works on,
refusing what the format does not allow with a 400 naming the field. Surfaces are core code:
the web layer routes to them, never the other way round.
"""
