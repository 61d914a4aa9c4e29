"""Catalogs of external frameworks (one YAML file each) that charter decisions can name."""
