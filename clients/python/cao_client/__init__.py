"""A small asyncio client for cao-sidecar: start `cao-sidecar --stdio` and call cao/* methods.

async with CaoClient.start() as cao:
    answer = await cao.handoff("echo hi", profile="mock_developer")
"""

from cao_client.client import CaoClient, CaoError

__all__ = ["CaoClient", "CaoError"]
