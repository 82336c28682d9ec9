"""The plugin API: everything a technique, metric, probe or executor author touches."""
