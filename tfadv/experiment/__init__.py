"""Experiments: the configuration of a run, the training recipes, the run folder, and the jobs
behind the command-line tools. The only layer that reads a configuration; errors name its fields."""
