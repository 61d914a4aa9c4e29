"""``Store.exclusive``: a named lock shared by every process on one database, never waited for."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

from charter.storage import Store, open_store


def test_a_second_store_on_the_same_database_is_refused_while_the_first_holds_it(
    store: Store, store_url: str
) -> None:
    other = open_store(store_url)
    try:
        with store.exclusive("job") as mine:
            assert mine
            with other.exclusive("job") as theirs:
                assert not theirs
            with other.exclusive("another job") as unrelated:
                assert unrelated  # locks are per name
        with other.exclusive("job") as theirs:
            assert theirs  # released when the holder's block ended
            with store.exclusive("job") as mine:
                assert not mine
    finally:
        other.close()


def test_the_lock_is_released_when_the_block_raises(store: Store, store_url: str) -> None:
    other = open_store(store_url)
    try:
        try:
            with store.exclusive("job") as mine:
                assert mine
                raise RuntimeError("the work failed")
        except RuntimeError:
            pass
        with other.exclusive("job") as theirs:
            assert theirs
    finally:
        other.close()


HOLDER = textwrap.dedent(
    """
    import sys, time
    from charter.storage import open_store
    store = open_store(sys.argv[1])
    with store.exclusive("job") as mine:
        print("held" if mine else "refused", flush=True)
        time.sleep(60)
    """
)


def test_a_holder_that_dies_releases_the_lock(store: Store, store_url: str) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, store_url], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        with store.exclusive("job") as mine:
            assert not mine  # another process holds it
    finally:
        holder.kill()  # SIGKILL: no cleanup code runs in the holder
        holder.wait(10)
        if holder.stdout is not None:
            holder.stdout.close()
    deadline = time.monotonic() + 10
    while True:  # PostgreSQL notices the dropped session within moments
        with store.exclusive("job") as mine:
            if mine:
                break
        assert time.monotonic() < deadline, "the dead holder's lock was never released"
        time.sleep(0.05)
