"""The studio's testing kit: tiny random-weight models, fixtures and contract test mixins.

Registered as a pytest plugin (``pytest11`` entry point ``studio``), so third-party plugin authors
get the same fixtures. Importing it imports no model library; the factories import them lazily.
"""
