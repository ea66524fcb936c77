"""Dialing rules: where a number is (time zone, region, operator), when it may be called, and
whether it asked not to be. Every rule lives here so the API, the bulk loader, Dagster and the
dial queue share one definition (docs/dialing-rules.md)."""
