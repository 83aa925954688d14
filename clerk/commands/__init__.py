"""clerk's own commands, each module imported only when one of its commands runs."""
