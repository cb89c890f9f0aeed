"""Top dreams: scoring frames, keeping the best in a crash-safe store, replaying them, exploring for more."""

# Kept here, free of heavy imports, so `vj --help` stays instant. See vj.dreams.explore.
STRATEGIES = ("random", "walk", "evolve", "anneal", "cluster")
# Other names a strategy answers to.
ALIASES = {"evolutionary": "evolve"}
