"""Decisions, pure: which route holds each listen socket (desired) and what to change (plan)."""
