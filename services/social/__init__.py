"""Social: a public activity feed built from trades, level-ups, achievements and mints."""
