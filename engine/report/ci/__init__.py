"""What CI reads besides the exit code: JUnit XML (``junit``) and GitHub's job summary
(``step_summary``)."""
