<?php
// Round trip with php-amqplib: see scripts/clients/run. Usage: php roundtrip.php URL
require 'PhpAmqpLib/autoload.php';

use PhpAmqpLib\Connection\AMQPStreamConnection;
use PhpAmqpLib\Exception\AMQPProtocolChannelException;
use PhpAmqpLib\Message\AMQPMessage;
use PhpAmqpLib\Package;

$step = 'connect';
function check($ok, $what) { if (!$ok) throw new RuntimeException($what); }
function body($msg) { return $msg === null ? null : $msg->getBody(); }

try {
    $u = parse_url($argv[1]);
    $vhost = isset($u['path']) && $u['path'] !== '' && $u['path'] !== '/' ? urldecode(substr($u['path'], 1)) : '/';
    $conn = new AMQPStreamConnection($u['host'], $u['port'] ?? 5672, urldecode($u['user']), urldecode($u['pass']), $vhost);
    $ch = $conn->channel();
    $name = 'clients-php-' . getmypid() . '-' . time();

    $step = 'declare';
    $ch->queue_declare($name, false, false, false, false);

    $step = 'publish with confirms';
    $acked = 0;
    $nacked = 0;
    $ch->set_ack_handler(function () use (&$acked) { $acked++; });
    $ch->set_nack_handler(function () use (&$nacked) { $nacked++; });
    $ch->confirm_select();
    foreach (['m1', 'm2'] as $b) $ch->basic_publish(new AMQPMessage($b), '', $name);
    $ch->wait_for_pending_acks(5);
    check($acked === 2 && $nacked === 0, "confirms: $acked acked, $nacked nacked");

    $step = 'consume, ack, nack with requeue';
    // Ack the first, nack-requeue the second; it must come back redelivered.
    $got = [];
    $tag = $ch->basic_consume($name, '', false, false, false, false, function ($m) use (&$got) {
        $got[] = [$m->getBody(), $m->isRedelivered()];
        count($got) === 2 ? $m->nack(true) : $m->ack();
    });
    while (count($got) < 3) $ch->wait(null, false, 5);
    check($got === [['m1', false], ['m2', false], ['m2', true]], 'deliveries: ' . json_encode($got));
    $ch->basic_cancel($tag);

    $step = 'basic.get';
    $ch->basic_publish(new AMQPMessage('m3'), '', $name);
    $ch->wait_for_pending_acks(5);
    $m = $ch->basic_get($name);
    check(body($m) === 'm3', 'basic.get returned ' . var_export(body($m), true));
    $m->ack();
    check($ch->basic_get($name) === null, 'basic.get on an empty queue returned a message');

    $step = 'transaction';
    $tx = $conn->channel();
    $tx->tx_select();
    $tx->basic_publish(new AMQPMessage('t1'), '', $name);
    check($ch->basic_get($name, true) === null, 'uncommitted publish is visible');
    $tx->tx_commit();
    check(body($ch->basic_get($name, true)) === 't1', 'committed publish is not visible');
    $tx->basic_publish(new AMQPMessage('t2'), '', $name);
    $tx->tx_rollback();
    check($ch->basic_get($name, true) === null, 'rolled-back publish is visible');
    $tx->close();

    $step = 'passive declare of a missing queue';
    try {
        $conn->channel()->queue_declare("$name-missing", true);
        throw new RuntimeException('passive declare of a missing queue succeeded');
    } catch (AMQPProtocolChannelException $e) {
        check($e->getCode() === 404, 'reply code ' . $e->getCode());
    }

    $step = 'close';
    $ch->queue_delete($name);
    $ch->close();
    $conn->close();
    check(!$conn->isConnected(), 'connection not closed');
    echo 'ok php-amqplib ' . Package::VERSION . "\n";
} catch (Throwable $e) {
    fwrite(STDERR, "FAIL at $step: " . get_class($e) . ': ' . $e->getMessage() . "\n");
    exit(1);
}
