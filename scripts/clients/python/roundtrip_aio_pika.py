"""Round trip with aio-pika: see scripts/clients/run. Usage: python3 roundtrip_aio_pika.py URL"""
import asyncio
import os
import sys
import time

import aio_pika
from aio_pika.exceptions import ChannelNotFoundEntity
from pamqp.commands import Basic

step = "connect"


def check(ok, what):
    if not ok:
        raise AssertionError(what)


async def main(url):
    global step
    conn = await aio_pika.connect(url)
    ch = await conn.channel()  # publisher confirms are on by default
    name = f"clients-aio-pika-{os.getpid()}-{int(time.time())}"

    step = "declare"
    q = await ch.declare_queue(name)

    step = "publish with confirms"
    for b in (b"m1", b"m2"):
        confirm = await ch.default_exchange.publish(aio_pika.Message(b), routing_key=name)
        check(isinstance(confirm, Basic.Ack), f"publish confirmed with {confirm!r}")

    step = "consume, ack, nack with requeue"
    # Ack the first, nack-requeue the second; it must come back redelivered.
    got = asyncio.Queue()
    n = 0

    async def on_message(msg):
        nonlocal n
        n += 1
        if n == 2:
            await msg.nack(requeue=True)
        else:
            await msg.ack()
        got.put_nowait((msg.body, msg.redelivered))

    tag = await q.consume(on_message)
    seen = [await asyncio.wait_for(got.get(), 5) for _ in range(3)]
    check(seen == [(b"m1", False), (b"m2", False), (b"m2", True)], f"deliveries: {seen}")
    await q.cancel(tag)

    step = "basic.get"
    await ch.default_exchange.publish(aio_pika.Message(b"m3"), routing_key=name)
    msg = await q.get(no_ack=False, fail=False)
    check(msg is not None and msg.body == b"m3", f"basic.get returned {msg and msg.body!r}")
    await msg.ack()
    check(await q.get(fail=False) is None, "basic.get on an empty queue returned a message")

    step = "transaction"
    tch = await conn.channel(publisher_confirms=False)
    tx = tch.transaction()
    await tx.select()
    await tch.default_exchange.publish(aio_pika.Message(b"t1"), routing_key=name)
    check(await q.get(no_ack=True, fail=False) is None, "uncommitted publish is visible")
    await tx.commit()
    msg = await q.get(no_ack=True, fail=False)
    check(msg is not None and msg.body == b"t1", "committed publish is not visible")
    await tch.default_exchange.publish(aio_pika.Message(b"t2"), routing_key=name)
    await tx.rollback()
    check(await q.get(no_ack=True, fail=False) is None, "rolled-back publish is visible")
    await tch.close()

    step = "passive declare of a missing queue"
    try:
        await (await conn.channel()).declare_queue(name + "-missing", passive=True)
        raise AssertionError("passive declare of a missing queue succeeded")
    except ChannelNotFoundEntity as e:
        # aiormq maps reply code 404 to this class and keeps only the reply text.
        check(str(e.args[0]).startswith("NOT_FOUND"), f"reply text {e.args[0]!r}")

    step = "close"
    await q.delete()
    await conn.close()
    check(conn.is_closed, "connection not closed")
    print(f"ok aio-pika {aio_pika.__version__}")


if __name__ == "__main__":
    try:
        asyncio.run(asyncio.wait_for(main(sys.argv[1]), 30))
    except (Exception, asyncio.TimeoutError) as e:
        sys.exit(f"FAIL at {step}: {type(e).__name__}: {e}")
