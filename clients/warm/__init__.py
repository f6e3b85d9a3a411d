"""Warm launchers: one long-lived process per client module and interpreter, forking gated runs.

``agent``, ``child``, ``paths`` and ``preload`` run inside the client's own interpreter and import
nothing but the standard library (and each other, relatively); so does this ``__init__``.
``gate`` and ``nice`` too. ``launcher``, ``launchers`` and ``run`` are pipstorm's side.
"""
