"""Small real servers and helpers more than one test folder uses."""
