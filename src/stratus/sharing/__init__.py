"""Delta Sharing: Stratus as a server of the open protocol, with a token per recipient.

``models`` (shares, share tables, recipients, tokens, grants in the metastore database),
``service`` (administration and the protocol's reads; ``Stratus.sharing``), ``protocol``
(predicates, pruning, schemas, statistics), ``signing`` (pre-signed file URLs) and ``cli``
(``stratus share ...``). The HTTP layer is :mod:`stratus.api.sharing`.
"""
