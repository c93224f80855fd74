"""Observers: the status API, metrics and the page. They read a snapshot; they never reach into the
runtime.
"""
