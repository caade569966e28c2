"""How agenda-decl reaches each store, one module per driver: opening, pooling, checking and
closing connections from options, which driver errors mean "unreachable", and connection
strings (never printed with their password). The repository and the channel of a store make
their connections here and nowhere else. ``retry`` (no driver) is how an operation rides out
an outage. No job logic: this package imports only the core.
"""
