"""Trained guard artifacts shipped with Charter, with their model cards."""
