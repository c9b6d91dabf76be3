"""core.inbox: input goes in one at a time, in order, once; failures are told to the sender once."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest
from fakes import make_agent
from fixtures.full_disk import fill, mount_tmpfs

from cao_sidecar.core.agent import Agent, Turn, TurnResult
from cao_sidecar.core.errors import AgentExited
from cao_sidecar.core.inbox import Inbox
from cao_sidecar.core.status import AgentStatus as S
from cao_sidecar.storage.messages import MessageStore, StoredMessage
from cao_sidecar.storage.state_db import open_state_db


class Typist:
    """A send_input that records each text and starts a turn the test ends."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.fail_on: set[str] = set()

    async def __call__(self, agent: Agent, text: str) -> Turn:
        if text in self.fail_on:
            raise RuntimeError(f"could not type {text!r}")
        self.sent.append(text)
        return agent.begin_turn(text)


def end_turn(agent: Agent) -> None:
    assert agent.turn is not None
    turn, agent.turn = agent.turn, None
    turn.done.set_result(TurnResult(S.COMPLETED, "done"))


@pytest.fixture
def store(tmp_path: Path) -> MessageStore:
    db, _ = open_state_db(tmp_path / "state.db")
    return MessageStore(db)


async def test_messages_go_in_one_at_a_time_in_order(tmp_path: Path, store: MessageStore) -> None:
    agent = make_agent(tmp_path)
    agent.status = S.IDLE
    typist, notices = Typist(), list[StoredMessage]()
    inbox = Inbox(agent, typist, store, notices.append)
    assert inbox.can_deliver_now()
    first, second, third = inbox.put("one"), inbox.put("two"), inbox.put("three")
    assert not inbox.can_deliver_now()
    await asyncio.wait_for(asyncio.shield(first.sent), 1)
    await asyncio.sleep(0.01)
    assert typist.sent == ["one"]  # the second waits for the first turn's end
    end_turn(agent)
    await asyncio.wait_for(asyncio.shield(second.sent), 1)
    end_turn(agent)
    await asyncio.wait_for(asyncio.shield(third.sent), 1)
    assert typist.sent == ["one", "two", "three"]
    assert store.queued_for(agent.terminal_id) == []  # all delivered, none to deliver again
    assert {store.get(d.message_id).state for d in (first, second, third)} == {"delivered"}


async def test_a_task_put_first_goes_before_earlier_messages(tmp_path: Path, store: MessageStore) -> None:
    agent = make_agent(tmp_path)
    agent.status = S.STARTING  # not ready: everything waits
    typist = Typist()
    inbox = Inbox(agent, typist, store, lambda n: None)
    inbox.put("message sent while it started")
    task_id = store.add(agent.terminal_id, "the task", None)
    inbox.put_stored(task_id, "the task", first=True)
    assert inbox.pending == 2
    agent.apply(S.IDLE, "› ")
    await asyncio.sleep(0.01)
    assert typist.sent == ["the task"]
    end_turn(agent)
    await asyncio.sleep(0.01)
    assert typist.sent == ["the task", "message sent while it started"]


async def test_restore_keeps_ids_and_order(tmp_path: Path, store: MessageStore) -> None:
    agent = make_agent(tmp_path)
    agent.status = S.IDLE
    ids = [store.add(agent.terminal_id, text, "lead") for text in ("a", "b")]
    typist = Typist()
    inbox = Inbox(agent, typist, store, lambda n: None)
    inbox.restore(store.queued_for(agent.terminal_id))
    await asyncio.sleep(0.01)
    end_turn(agent)
    await asyncio.sleep(0.01)
    assert typist.sent == ["a", "b"]
    assert [store.get(i).state for i in ids] == ["delivered", "delivered"]


async def test_a_failed_message_is_told_to_its_sending_agent_exactly_once(tmp_path: Path, store: MessageStore) -> None:
    agent = make_agent(tmp_path)
    agent.status = S.PROCESSING  # busy: the message waits in the queue
    notices: list[StoredMessage] = []
    inbox = Inbox(agent, Typist(), store, notices.append)
    delivery = inbox.put("hello", sender="lead", sender_id="bbbb0002")
    inbox.fail_all(AgentExited("agent exited"))
    inbox.fail_all(AgentExited("agent exited"))  # again: nothing left, nobody told twice
    with pytest.raises(AgentExited):
        delivery.sent.result()
    assert len(notices) == 1 and notices[0].receiver == "bbbb0002"
    assert delivery.message_id in notices[0].text
    assert store.mark_failed(delivery.message_id, "again") is None  # failed once only
    assert store.get(delivery.message_id).state == "failed"


async def test_a_typing_failure_fails_that_message_and_the_next_still_goes(tmp_path: Path, store: MessageStore) -> None:
    agent = make_agent(tmp_path)
    agent.status = S.IDLE
    typist = Typist()
    typist.fail_on.add("bad")
    inbox = Inbox(agent, typist, store, lambda n: None)
    bad, good = inbox.put("bad"), inbox.put("good")
    with pytest.raises(RuntimeError):
        await asyncio.wait_for(asyncio.shield(bad.sent), 1)
    await asyncio.wait_for(asyncio.shield(good.sent), 1)
    assert typist.sent == ["good"]
    assert store.get(bad.message_id).state == "failed" and store.get(good.message_id).state == "delivered"


async def test_a_cancelled_delivery_is_never_typed(tmp_path: Path, store: MessageStore) -> None:
    agent = make_agent(tmp_path)
    agent.status = S.PROCESSING
    typist = Typist()
    inbox = Inbox(agent, typist, store, lambda n: None)
    delivery = inbox.put("too late")
    delivery.sent.cancel()  # its caller timed out
    agent.apply(S.COMPLETED, "› x")
    await asyncio.sleep(0.02)
    assert typist.sent == [] and store.get(delivery.message_id).state == "failed"


@pytest.fixture
def full_disk_dir(tmp_path: Path):
    directory = tmp_path / "small"
    mount_tmpfs(directory, "2m")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], capture_output=True)


async def test_a_full_disk_holds_a_message_until_its_typing_can_be_recorded(tmp_path: Path, full_disk_dir: Path) -> None:
    """Typed without a record, a crash before the next write would have it typed again."""
    db, _ = open_state_db(full_disk_dir / "state.db")
    store = MessageStore(db)
    agent = make_agent(tmp_path)
    agent.status = S.IDLE
    typist = Typist()
    inbox = Inbox(agent, typist, store, lambda n: None)
    first, second = inbox.put("one"), inbox.put("two")
    await asyncio.wait_for(asyncio.shield(first.sent), 1)
    filler = fill(full_disk_dir, 0)
    end_turn(agent)  # "two" may go in now, but its typing cannot be recorded
    await asyncio.sleep(1.2)
    assert typist.sent == ["one"] and not second.sent.done()
    assert store.get(second.message_id).state == "queued"
    filler.unlink()  # room again
    await asyncio.wait_for(asyncio.shield(second.sent), 3)
    assert typist.sent == ["one", "two"]
    assert [store.get(d.message_id).state for d in (first, second)] == ["delivered", "delivered"]


async def test_a_delivery_the_full_disk_refused_is_recorded_when_there_is_room(full_disk_dir: Path) -> None:
    db, _ = open_state_db(full_disk_dir / "state.db")
    store = MessageStore(db)
    message_id = store.add("t1", "hello", None)
    assert store.mark_typing(message_id)
    filler = fill(full_disk_dir, 0)
    store.mark_delivered(message_id)
    assert store.get(message_id).state == "queued"  # refused, kept
    filler.unlink()
    store.flush_pending()
    assert store.get(message_id).state == "delivered"
