"""The programs: the command line, the daemon's lifecycle, check and routes, logging and
event loops."""
