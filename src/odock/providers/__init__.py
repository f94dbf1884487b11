"""Providers: upstream configuration, the model catalog, provider-key encryption and adapters."""
