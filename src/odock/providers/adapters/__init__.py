"""One adapter module per upstream API, all behind :class:`odock.providers.adapters.base.Adapter`."""
