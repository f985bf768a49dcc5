"""Stack-side observability: scrape targets from the registry, the monitoring
processes `astra up` runs, alert sink, and the `astra trace` / `astra logs` readers."""
