// Round trip with amqplib: see scripts/clients/run. Usage: node roundtrip.js URL
'use strict';
const amqp = require('amqplib');
const path = require('node:path');
// The package's exports hide its package.json; read it beside the entry point.
const { version } = require(path.join(path.dirname(require.resolve('amqplib')), 'package.json'));

let step = 'connect';
function check(ok, what) {
  if (!ok) throw new Error(what);
}
const body = (m) => (m ? m.content.toString() : null);

async function main(url) {
  const conn = await amqp.connect(url);
  const ch = await conn.createConfirmChannel();
  const name = `clients-amqplib-${process.pid}-${Math.floor(Date.now() / 1000)}`;

  step = 'declare';
  await ch.assertQueue(name, { durable: false });

  step = 'publish with confirms';
  for (const b of ['m1', 'm2']) ch.sendToQueue(name, Buffer.from(b));
  await ch.waitForConfirms(); // rejects if any publish was nacked

  step = 'consume, ack, nack with requeue';
  // Ack the first, nack-requeue the second; it must come back redelivered.
  const seen = [];
  const three = new Promise((resolve, reject) => {
    setTimeout(() => reject(new Error(`timed out; deliveries: ${JSON.stringify(seen)}`)), 5000).unref();
    ch.consume(name, (m) => {
      seen.push([body(m), m.fields.redelivered]);
      if (seen.length === 2) ch.nack(m, false, true);
      else ch.ack(m);
      if (seen.length === 3) resolve();
    }).then((ok) => (three.tag = ok.consumerTag), reject);
  });
  await three;
  const want = [['m1', false], ['m2', false], ['m2', true]];
  check(JSON.stringify(seen) === JSON.stringify(want), `deliveries: ${JSON.stringify(seen)}`);
  await ch.cancel(three.tag);

  step = 'basic.get';
  ch.sendToQueue(name, Buffer.from('m3'));
  await ch.waitForConfirms();
  const m = await ch.get(name, { noAck: false });
  check(body(m) === 'm3', `basic.get returned ${body(m)}`);
  ch.ack(m);
  check((await ch.get(name)) === false, 'basic.get on an empty queue returned a message');

  step = 'transaction';
  // amqplib has no tx methods; its channel's rpc sends them by method id
  // (class 90 << 16 | method; the reply is method + 1), as it sends confirm.select.
  const tx = await conn.createChannel();
  const txRpc = (id) => tx.rpc((90 << 16) | id, {}, ((90 << 16) | id) + 1);
  const [select, commit, rollback] = [10, 20, 30];
  await txRpc(select);
  tx.sendToQueue(name, Buffer.from('t1'));
  check((await ch.get(name, { noAck: true })) === false, 'uncommitted publish is visible');
  await txRpc(commit);
  check(body(await ch.get(name, { noAck: true })) === 't1', 'committed publish is not visible');
  tx.sendToQueue(name, Buffer.from('t2'));
  await txRpc(rollback);
  check((await ch.get(name, { noAck: true })) === false, 'rolled-back publish is visible');
  await tx.close();

  step = 'passive declare of a missing queue';
  const pch = await conn.createChannel();
  pch.on('error', () => {}); // the broker's close also arrives as an event; the rejection below is checked
  const err = await pch.checkQueue(`${name}-missing`).then(() => null, (e) => e);
  check(err !== null, 'passive declare of a missing queue succeeded');
  check(err.code === 404, `reply code ${err.code}: ${err.message}`);

  step = 'close';
  await ch.deleteQueue(name);
  let closed = false;
  conn.on('close', () => (closed = true));
  await conn.close();
  check(closed, 'connection not closed');
  console.log(`ok amqplib ${version}`);
}

main(process.argv[2]).catch((e) => {
  console.error(`FAIL at ${step}: ${e.message}`);
  process.exit(1);
});
