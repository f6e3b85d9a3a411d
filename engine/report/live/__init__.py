"""The live dashboard's data (``feed``, ``judged``) and its page (``templates/dashboard/``)."""
