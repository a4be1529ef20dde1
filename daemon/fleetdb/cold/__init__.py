"""The cold tier: closed days compacted into encoded blocks plus per-day hourly summaries."""
