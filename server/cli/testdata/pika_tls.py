"""pika over TLS with an SSL context, for TestTLSPika.

Usage: pika_tls.py plain|external PORT CAFILE CERTFILE KEYFILE
plain: PLAIN as guest/guest, no client certificate; external: the client
certificate and SASL EXTERNAL. Declares a queue, publishes with a confirm,
gets the message back and prints "ok MODE".
"""
import ssl
import sys
import time

import pika

mode, port, cafile, certfile, keyfile = sys.argv[1:]
ctx = ssl.create_default_context(cafile=cafile)
if mode == "external":
    ctx.load_cert_chain(certfile, keyfile)
    creds = pika.credentials.ExternalCredentials()
else:
    creds = pika.PlainCredentials("guest", "guest")
params = pika.ConnectionParameters(host="127.0.0.1", port=int(port), credentials=creds,
                                   ssl_options=pika.SSLOptions(ctx, "127.0.0.1"),
                                   connection_attempts=1, socket_timeout=10)
conn = pika.BlockingConnection(params)
ch = conn.channel()
q = ch.queue_declare("", exclusive=True).method.queue
ch.confirm_delivery()
ch.basic_publish("", q, b"pika over TLS")
deadline = time.monotonic() + 10
body = None
while body is None and time.monotonic() < deadline:
    method, _, body = ch.basic_get(q, auto_ack=True)
if body != b"pika over TLS":
    sys.exit("got %r" % (body,))
conn.close()
print("ok", mode)
