"""The stores, one subpackage each (``sqlite``, ``postgres``, ``redis``, ``mongo``,
``memory``): a repository, its queries (SQL in named blocks, Redis scripts as ``.lua`` files)
and the backend class, which bundles the store's own notification channel. ``base`` holds the
rules every repository shares.
"""
