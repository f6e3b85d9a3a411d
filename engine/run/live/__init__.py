"""What follows a run's streams while it plays: ``--abort-on-fail`` (``abort``) and the live
page's server (``dashboard``)."""
