"""The built-in filters, actions and classifiers: plugins like any other."""
