"""A pipe end handed to fdloop's streams keeps its flags for everyone else sharing it.

O_NONBLOCK lives on the open file description: a stream that set it on an adopted fd
would make the sender's (or another process's) copy non-blocking behind its back.
"""

from __future__ import annotations

import os

import anyio
import pytest

from fdloop.streams import PipeReceiveStream, PipeSendStream

# Pipe streams do not go through a backend: one run of them is enough.
pytestmark = pytest.mark.single_backend


async def test_adopted_read_end_leaves_the_shared_description_blocking() -> None:
    read_end, write_end = os.pipe()
    shared = os.dup(read_end)  # another holder of the same description
    try:
        stream = PipeReceiveStream(read_end)
        assert os.get_blocking(shared), "the other holder's copy became non-blocking"
        os.write(write_end, b"through the private copy")
        with anyio.fail_after(10):
            assert await stream.receive() == b"through the private copy"
        await stream.aclose()
    finally:
        os.close(shared)
        os.close(write_end)


async def test_adopted_write_end_leaves_another_writer_blocking() -> None:
    read_end, write_end = os.pipe()
    other_writer = os.dup(write_end)  # e.g. the copy a child process would inherit
    try:
        stream = PipeSendStream(write_end)
        assert os.get_blocking(other_writer), "the other writer became non-blocking"
        with anyio.fail_after(10):
            await stream.send(b"hello")
        await stream.aclose()
        assert os.read(read_end, 100) == b"hello"
    finally:
        os.close(other_writer)
        os.close(read_end)
