"""Running searches: the experiment store, Ray Tune orchestration, the two-step constraint."""
