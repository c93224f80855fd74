"""The agent protocol's wire formats: the stream header and the datagram channel's messages. Pure.
"""
