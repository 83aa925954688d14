"""The built-in executors (registered by clerk.plugins.builtin.executors)."""
