"""A replay's plan from an access log: parse lines (``logline``), read sources (``read``), say
what a path asks for (``paths``), group requests into client runs (``group``), and schedule
them with the corpus they need (``schedule``). Pure functions but for reading files."""
