"""How catwalk's flows are started outside a single process: launchers, workers, servers."""
