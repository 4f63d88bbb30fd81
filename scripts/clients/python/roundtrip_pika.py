"""Round trip with pika: see scripts/clients/run. Usage: python3 roundtrip_pika.py URL"""
import os
import sys
import time

import pika
from pika.exceptions import ChannelClosedByBroker

step = "connect"


def check(ok, what):
    if not ok:
        raise AssertionError(what)


def main(url):
    global step
    conn = pika.BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    name = f"clients-pika-{os.getpid()}-{int(time.time())}"

    step = "declare"
    ch.queue_declare(name)

    step = "publish with confirms"
    ch.confirm_delivery()  # basic_publish now waits for the confirm and raises on a nack
    for b in (b"m1", b"m2"):
        ch.basic_publish("", name, b)

    step = "consume, ack, nack with requeue"
    # Ack the first, nack-requeue the second; it must come back redelivered.
    seen = []

    def on_message(c, method, _props, body):
        seen.append((body, method.redelivered))
        if len(seen) == 2:
            c.basic_nack(method.delivery_tag, requeue=True)
        else:
            c.basic_ack(method.delivery_tag)

    tag = ch.basic_consume(name, on_message)
    deadline = time.monotonic() + 5
    while len(seen) < 3 and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.1)
    check(seen == [(b"m1", False), (b"m2", False), (b"m2", True)], f"deliveries: {seen}")
    ch.basic_cancel(tag)

    step = "basic.get"
    ch.basic_publish("", name, b"m3")
    method, _, body = ch.basic_get(name)
    check(body == b"m3", f"basic.get returned {body!r}")
    ch.basic_ack(method.delivery_tag)
    check(ch.basic_get(name)[0] is None, "basic.get on an empty queue returned a message")

    step = "transaction"
    tx = conn.channel()
    tx.tx_select()
    tx.basic_publish("", name, b"t1")
    check(ch.basic_get(name, auto_ack=True)[0] is None, "uncommitted publish is visible")
    tx.tx_commit()
    check(ch.basic_get(name, auto_ack=True)[2] == b"t1", "committed publish is not visible")
    tx.basic_publish("", name, b"t2")
    tx.tx_rollback()
    check(ch.basic_get(name, auto_ack=True)[0] is None, "rolled-back publish is visible")
    tx.close()

    step = "passive declare of a missing queue"
    try:
        conn.channel().queue_declare(name + "-missing", passive=True)
        raise AssertionError("passive declare of a missing queue succeeded")
    except ChannelClosedByBroker as e:
        check(e.reply_code == 404, f"reply code {e.reply_code}")

    step = "close"
    ch.queue_delete(name)
    conn.close()
    check(conn.is_closed, "connection not closed")
    print(f"ok pika {pika.__version__}")


if __name__ == "__main__":
    try:
        main(sys.argv[1])
    except Exception as e:
        sys.exit(f"FAIL at {step}: {type(e).__name__}: {e}")
