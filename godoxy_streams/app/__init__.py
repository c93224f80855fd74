"""The programs: the command line, the daemon's lifecycle, check, routes, logging and event loops.
"""
