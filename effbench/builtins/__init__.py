"""First-party plugins that need only effbench's core dependencies, registered like any plugin."""
