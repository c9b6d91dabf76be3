"""The attrs classes of the wire contract, by area; `cao_sidecar.wire` gathers them into its
method and notification tables and converts them.
"""
